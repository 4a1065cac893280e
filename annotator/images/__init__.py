"""Images and their embeddings: ingest (every file read the one way), the stored image-encoder
output (computed once per image and model, read through ``embeddings.load_stored``), and the
``embed`` queue's task."""
