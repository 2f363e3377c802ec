//! Request-target normalisation (placeholder; being written).
