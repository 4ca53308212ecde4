//! An instance pinned by the previous layout keeps its service and real ids: `LB_SERVICES_V1`
//! (ring state in the entry) and `LB_REALS_V1` (one copy per id) are read at start-up, so
//! every flow keeps its real across the upgrade, and removed once the new program runs.
//! Needs root (bpffs, BPF maps).

use std::{ffi::CString, os::fd::RawFd, path::Path};

use lb_common::{FAMILY_IPV4, FORWARD_DR, PROTO_TCP, REAL_AVAILABLE, Real, Service, ServiceKey};
use lb_tests::privilege::require_root;
use lb_userspace::{config::Limits, dataplane::loader};

/// `bpf(cmd, attr)` with a zero-padded attribute block, as the kernel accepts.
fn bpf(command: libc::c_long, attr: &[u64; 16]) -> i64 {
    // SAFETY: `attr` is 128 bytes, every pointer in it points at live memory of the right
    // size for `command`.
    unsafe { libc::syscall(libc::SYS_bpf, command, attr.as_ptr(), 128) }
}

/// Creates, fills and pins a map of `map_type` (hash 1, array 2), as the previous version
/// laid its maps out.
fn pin_previous_layout<K, V>(path: &Path, map_type: u64, entries: &[(K, V)]) {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    const BPF_OBJ_PIN: libc::c_long = 6;
    let mut create = [0u64; 16];
    // map_type | key_size, value_size | max_entries
    create[0] = map_type | ((size_of::<K>() as u64) << 32);
    create[1] = size_of::<V>() as u64 | (16 << 32);
    let fd = bpf(BPF_MAP_CREATE, &create);
    assert!(
        fd >= 0,
        "BPF_MAP_CREATE: {}",
        std::io::Error::last_os_error()
    );
    let fd = fd as RawFd;
    for (key, value) in entries {
        let mut update = [0u64; 16];
        update[0] = fd as u64;
        update[1] = key as *const K as u64;
        update[2] = value as *const V as u64;
        assert_eq!(
            bpf(BPF_MAP_UPDATE_ELEM, &update),
            0,
            "{}",
            std::io::Error::last_os_error()
        );
    }
    let pathname = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut pin = [0u64; 16];
    pin[0] = pathname.as_ptr() as u64;
    pin[1] = fd as u64;
    assert_eq!(
        bpf(BPF_OBJ_PIN, &pin),
        0,
        "BPF_OBJ_PIN: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: our own descriptor, not used afterwards (the pin keeps the map).
    unsafe { libc::close(fd) };
}

#[test]
fn reals_pinned_in_the_previous_layout_keep_their_ids() {
    if !require_root("reals_pinned_in_the_previous_layout_keep_their_ids") {
        return;
    }
    let dir = Path::new(loader::BPFFS_ROOT)
        .join("lb")
        .join(format!("lbt-upgrade-{}", std::process::id()));
    let _ = loader::unpin_all(&dir);
    let limits = Limits {
        flows: 1024,
        services: 8,
        reals: 16,
    };
    // Loading once makes the pin directory (on bpffs, mounted if need be).
    drop(loader::load(&limits, Some(&dir)).unwrap_or_else(|e| panic!("{e}")));
    let real = |last: u8| Real {
        addr: [192, 0, 2, last, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        mac: [2, 0, 0, 0, 0, last],
        port_be: 80u16.to_be(),
        ifindex: 2,
        service_id: 1,
        flags: REAL_AVAILABLE,
        forward: FORWARD_DR,
        family: FAMILY_IPV4,
        _pad: [0; 2],
    };
    let reals = vec![(3u32, real(11)), (7, real(12))];
    pin_previous_layout(&dir.join("LB_REALS_V1"), 2, &reals);
    let key = ServiceKey {
        vip: [192, 0, 2, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        port_be: 80u16.to_be(),
        protocol: PROTO_TCP,
        family: FAMILY_IPV4,
    };
    // The old entry: id, ring length, flags, then forward and ring half in the last word.
    let old_entry: [u32; 4] = [5, 3, 0, u32::from(FORWARD_DR) | (1 << 8)];
    pin_previous_layout(&dir.join("LB_SERVICES_V1"), 1, &[(key, old_entry)]);

    let (services, read_reals) = loader::previous_layout(&dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("the previous layout is found");
    assert_eq!(read_reals, reals);
    assert_eq!(
        services,
        vec![(
            key,
            Service {
                id: 5,
                flags: 0,
                forward: FORWARD_DR,
                _pad: [0; 7],
            }
        )]
    );
    loader::remove_retired_pins(&dir);
    assert!(!dir.join("LB_REALS_V1").exists() && !dir.join("LB_SERVICES_V1").exists());
    assert!(loader::previous_layout(&dir).unwrap().is_none());
    loader::unpin_all(&dir).unwrap();
}
