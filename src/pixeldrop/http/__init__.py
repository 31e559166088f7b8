"""HTTP plumbing that every surface shares (the ClipDrop API in api/, the pages in web/, and
the surfaces to come), so that they never import each other: the services and their typed
dependency, bounded body reading, client hang-ups, the one table from domain errors to
statuses, request timing, and the uvicorn settings `pixeldrop serve` runs with."""
