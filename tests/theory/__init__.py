"""Property tests of GeLoRA's Theorem 3.2 and Corollary 3.2.1 (``tox -e theory``)."""
