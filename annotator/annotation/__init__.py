"""Stage 1 of the data engine (assisted-manual annotation): the annotator queue and its leases,
answering clicks with the project's model (or the classic segmenter), visits and their effort
figures, review, and the dashboard."""
