//! buildpack (to be written)
