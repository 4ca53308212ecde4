//! `lbadm`: the ipvsadm-like CLI. See `lb_userspace::lbadm`.

fn main() -> std::process::ExitCode {
    lb_userspace::lbadm::main()
}
