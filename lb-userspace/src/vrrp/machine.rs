//! The VRRPv3 state machine (being written).
