//! The grantline service and CLI: thin glue over `ledger` and `projector`.
