//! One-off commands (`paas run`), the app's processes (`paas ps`) and its
//! logs (`paas logs`).
