"""Shared domain code of the image pipeline: importable and testable without AWS.

Modules: config (validated settings), clients (boto3 clients, created once, injectable),
errors, imaging (the thumbnailer core), keys (object keys and ids), record (the ImagesTable
item, typed), repository (every read and write of the ImagesTable), events
(ImageProcessed/ImageFailed messages), thumbnailer (the use case), subscriber (what every
event consumer shares: parsing, idempotency), webhook (signed delivery), archive (JSON-lines
audit objects).
"""
