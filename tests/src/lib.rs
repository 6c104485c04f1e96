//! End-to-end tests live in `tests/`: they train with `histoscreen-train`, classify with
//! `histoscreen-edge`, and check that the two halves agree.
