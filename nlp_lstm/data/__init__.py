"""Corpora, readers, tokenizers and batching. Knows nothing of nn.Modules."""
