"""Which book a photo shows: ISBNs, barcodes, OCR, title match, Open Library and cover embeddings."""
