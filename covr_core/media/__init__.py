"""Uploaded images and their bytes: validation, hashing, object storage and the pHash index."""
