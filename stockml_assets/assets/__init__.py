"""The asset graph of DESIGN.md, one module per group of concerns."""
