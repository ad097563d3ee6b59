//! The allot command line.
