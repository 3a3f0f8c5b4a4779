//! The whole skel path — environment validation, config decoding, version
//! checks, prevResult conversion, result/error printing — with a plugin that
//! touches nothing: every outcome must be a JSON reply or a clean exit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_cni::error::CniError;
use weft_cni::skel::{Invocation, Plugin, dispatch};
use weft_cni::spec::CniResult;

struct Echo;

impl Plugin for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn add(&self, inv: &Invocation) -> Result<CniResult, CniError> {
        Ok(inv.net.prev()?.unwrap_or_default())
    }
    fn del(&self, inv: &Invocation) -> Result<(), CniError> {
        inv.check_args(&["IP"])
    }
    fn check(&self, inv: &Invocation) -> Result<(), CniError> {
        inv.net.prev().map(|_| ())
    }
}

const CMDS: &[&str] = &[
    "ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC", "", "BOGUS",
];

fuzz_target!(|input: (u8, &str, &str, &str, &[u8])| {
    let (cmd, cid, ifname, args, stdin) = input;
    let cmd = CMDS[usize::from(cmd) % CMDS.len()];
    let env = |k: &str| -> Option<String> {
        Some(match k {
            "CNI_COMMAND" => cmd.to_string(),
            "CNI_CONTAINERID" => cid.to_string(),
            "CNI_NETNS" => "/run/netns/none".to_string(),
            "CNI_IFNAME" => ifname.to_string(),
            "CNI_ARGS" => args.to_string(),
            "CNI_PATH" => "/nonexistent".to_string(),
            _ => return None,
        })
    };
    let mut input = stdin;
    let out = dispatch(&Echo, &env, &mut input);
    if !out.stdout.is_empty() {
        serde_json::from_slice::<serde_json::Value>(out.stdout.as_bytes())
            .expect("stdout must be JSON");
    }
    if out.exit_code != 0 {
        assert!(!out.stdout.is_empty(), "failure without an error JSON");
    }
});
