//! The cluster metadata model: the records of the metadata log, the image they build, and the
//! active controller's decisions.
