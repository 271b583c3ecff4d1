"""Acting on a report: the plan (pure decisions), re-verification against the disk, and the dry run."""
