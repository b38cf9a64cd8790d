//! deploy (to be written)
