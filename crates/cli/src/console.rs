//! `vessel console`, `logs`, `pause`, `resume` and `restart`: clients of
//! the daemon's console and lifecycle routes.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vessel_api::Client;
use vessel_boards::console::RawTerminal;

use crate::instances::{block_on, print_instance};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach to a VM's serial console (Ctrl-A d detaches, Ctrl-A Ctrl-A sends Ctrl-A).
    Console(ConsoleArgs),
    /// Print an instance's console log (`-f` follows it until the instance ends).
    Logs(LogsArgs),
    /// Pause an instance: its guest stops running, its memory and console stay.
    Pause(NameArgs),
    /// Resume a paused instance.
    Resume(NameArgs),
    /// Stop an instance if it runs (as `vessel stop`), then start it.
    Restart(RestartArgs),
}

#[derive(Debug, Parser)]
pub struct ConsoleArgs {
    pub name: String,
    /// Only watch: do not take the console's one writer slot.
    #[arg(long)]
    pub read_only: bool,
    /// Show this many bytes of past output first.
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub history: u64,
}

#[derive(Debug, Parser)]
pub struct LogsArgs {
    pub name: String,
    /// Keep printing new output until the instance ends.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last BYTES of the log.
    #[arg(long, value_name = "BYTES")]
    pub tail: Option<u64>,
}

#[derive(Debug, Parser)]
pub struct NameArgs {
    pub name: String,
    /// Print the instance as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Parser)]
pub struct RestartArgs {
    pub name: String,
    /// Seconds to wait for a clean stop before killing (the daemon's default: 10).
    #[arg(short, long, value_name = "SECONDS")]
    pub time: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    block_on(run_async(command, Client::from_env()))
}

async fn run_async(command: Command, client: Client) -> anyhow::Result<ExitCode> {
    match command {
        Command::Pause(a) => print_instance(&client.pause(&a.name).await?, a.json),
        Command::Resume(a) => print_instance(&client.resume(&a.name).await?, a.json),
        Command::Restart(a) => print_instance(&client.restart(&a.name, a.time).await?, a.json),
        Command::Logs(a) => {
            let mut out = std::io::stdout().lock();
            if a.follow {
                let mut stream = client.follow_logs(&a.name, a.tail).await?;
                while let Some(chunk) = stream.next().await {
                    out.write_all(&chunk?)?;
                    out.flush()?;
                }
            } else {
                out.write_all(&client.logs(&a.name, a.tail).await?)?;
            }
        }
        Command::Console(a) => return console(&client, a).await,
    }
    Ok(ExitCode::SUCCESS)
}

const CTRL_A: u8 = 0x01;

/// What the keyboard thread hands over.
enum Key {
    Bytes(Vec<u8>),
    Detach,
}

/// Ctrl-A escapes: `d` detaches, Ctrl-A sends one Ctrl-A, others are dropped.
#[derive(Default)]
struct Escapes {
    after_ctrl_a: bool,
}

impl Escapes {
    /// The bytes to send, and whether to detach after them.
    fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.after_ctrl_a {
                self.after_ctrl_a = false;
                match b {
                    b'd' | b'D' => return (out, true),
                    CTRL_A => out.push(CTRL_A),
                    _ => {}
                }
            } else if b == CTRL_A {
                self.after_ctrl_a = true;
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

async fn console(client: &Client, args: ConsoleArgs) -> anyhow::Result<ExitCode> {
    let stream = client
        .console(&args.name, !args.read_only, args.history)
        .await?;
    let terminal = RawTerminal::enter().context("cannot put the terminal into raw mode")?;
    eprint!(
        "vessel: attached to {}'s console{}; Ctrl-A d detaches\r\n",
        args.name,
        if args.read_only { " (read-only)" } else { "" }
    );
    let (mut from_guest, mut to_guest) = tokio::io::split(stream);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Key>(64);
    std::thread::Builder::new()
        .name("console-keys".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut escapes = Escapes::default();
            let mut buf = [0u8; 1024];
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                if n == 0 {
                    let _ = tx.blocking_send(Key::Detach);
                    return;
                }
                let (bytes, detach) = escapes.feed(&buf[..n]);
                if !bytes.is_empty() && tx.blocking_send(Key::Bytes(bytes)).is_err() {
                    return;
                }
                if detach {
                    let _ = tx.blocking_send(Key::Detach);
                    return;
                }
            }
        })
        .context("cannot start the keyboard thread")?;
    let mut buf = vec![0u8; 8192];
    let mut stdout = std::io::stdout();
    let ended = loop {
        tokio::select! {
            n = from_guest.read(&mut buf) => match n {
                Ok(0) | Err(_) => break true,
                Ok(n) => {
                    stdout.write_all(&buf[..n])?;
                    stdout.flush()?;
                }
            },
            key = rx.recv() => match key {
                Some(Key::Bytes(bytes)) => {
                    if args.read_only {
                        continue;
                    }
                    if to_guest.write_all(&bytes).await.is_err() {
                        break true;
                    }
                }
                Some(Key::Detach) | None => break false,
            },
        }
    };
    let _ = to_guest.shutdown().await;
    drop(terminal);
    if ended {
        eprintln!("\nvessel: the console closed (the instance ended or was stopped)");
    } else {
        eprintln!("\nvessel: detached from {}", args.name);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_a_d_detaches() {
        let mut e = Escapes::default();
        assert_eq!(e.feed(b"ls\n"), (b"ls\n".to_vec(), false));
        assert_eq!(e.feed(b"a\x01db"), (b"a".to_vec(), true));
        let mut e = Escapes::default();
        assert_eq!(e.feed(b"\x01\x01x"), (b"\x01x".to_vec(), false));
        assert_eq!(e.feed(b"\x01"), (Vec::new(), false));
        assert_eq!(e.feed(b"d"), (Vec::new(), true), "split across reads");
        let mut e = Escapes::default();
        assert_eq!(e.feed(b"\x01q\x03"), (b"\x03".to_vec(), false));
    }
}
