"""What export writes and the service reads (torch-free): manifest, tokenisers, vocabularies,
series checks and the task registry."""
