"""Stage 8: the reports. JSON is the machine contract (versioned schema); HTML is what a person reads."""
