//! dashboard (to be written)
