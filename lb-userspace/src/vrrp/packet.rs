//! VRRPv3 adverts on the wire (being written).
