//! Runs inputs of one target with the `reach` counters on and prints what they reached:
//! `cargo run --release --example reach -- <target> <file or directory>...`.

use std::path::Path;

fn files(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .expect("a readable directory")
            .map(|e| e.expect("an entry").path())
            .collect();
        entries.sort();
        for entry in entries {
            files(&entry, out);
        }
    } else {
        out.push(path.to_path_buf());
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("usage: reach <target> <paths>...");
    let mut inputs = Vec::new();
    for path in args {
        files(Path::new(&path), &mut inputs);
    }
    distlock_fuzz::reach::enable();
    for input in &inputs {
        let data = std::fs::read(input).expect("a readable input");
        match target.as_str() {
            "reply_bytes" => distlock_fuzz::records::run(&data),
            "event_sequence" => {
                use arbitrary::{Arbitrary, Unstructured};
                if let Ok(input) =
                    distlock_fuzz::events::EventInput::arbitrary_take_rest(Unstructured::new(&data))
                {
                    distlock_fuzz::events::run(&input);
                }
            }
            "command_encoding" => distlock_fuzz::encoding::run(&data),
            other => panic!("no target {other}"),
        }
    }
    println!("{} inputs of {target}", inputs.len());
    for (what, n) in distlock_fuzz::reach::counts() {
        println!("{n:>8}  {what}");
    }
}
