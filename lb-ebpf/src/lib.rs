#![no_std]
// Exists so that `cargo` can see the package on the host; the program is `src/main.rs`.
