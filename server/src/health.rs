//! health (to be written)
