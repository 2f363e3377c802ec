//! Apache mod_rewrite-compatible rules engine (placeholder; being written).
