//! The plugins, each a [`crate::skel::Plugin`].

pub mod host_local;
