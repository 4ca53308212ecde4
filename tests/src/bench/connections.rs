//! (being written)
use super::Section;

pub fn run() -> Vec<Section> {
    Vec::new()
}
