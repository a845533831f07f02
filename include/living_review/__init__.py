"""living-review: keep a published literature review's citing-paper list alive."""
