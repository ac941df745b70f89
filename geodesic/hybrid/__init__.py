"""The hybrid application: sparsify, learn a new task and keep the old ones, in one walk."""
