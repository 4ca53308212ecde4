//! `lbadm -C`: ipvsadm `-C`, every service goes (their flows with them).

use crate::config::edit::Edit;

pub fn edit() -> Edit {
    Edit::Clear
}
