"""The FastAPI query layer for grid engineers and auditors."""
