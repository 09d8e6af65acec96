//! Telemetry: one JSON tracing subscriber per process, writing to stdout
//! either directly ([`init`]) or through a background writer thread that
//! batches lines into few `write` calls ([`init_non_blocking`]).

use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{fmt, EnvFilter};

/// Filter used when `RUST_LOG` is not set.
pub const LOG_FILTER_DEFAULT: &str = "info";

/// Log lines the background writer holds at most; past this, logging waits
/// for the writer (backpressure, no line is dropped).
pub const LOG_QUEUE_LINES_MAX: usize = 16_384;

/// Pause of the background writer after each batch, in milliseconds: lines
/// logged meanwhile gather into the next batch instead of waking the writer
/// one by one. Also the most a line waits before it is written.
pub const LOG_BATCH_PAUSE_MS: u64 = 2;

/// Size of the background writer's buffer, in bytes.
pub const LOG_BUFFER_BYTES: usize = 64 * 1024;

fn filter(default_filter: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter))
}

/// Installs the process-wide JSON subscriber (filter from `RUST_LOG`, else
/// `default_filter`), writing each line to stdout as it is logged. Each line
/// carries the fields of the spans it is in, so a request's `request_id`
/// appears on every line logged while serving it.
///
/// Call it once, first thing in `main`; later calls (for example from tests)
/// leave the first subscriber in place and return false.
pub fn init(default_filter: &str) -> bool {
    fmt()
        .json()
        .with_env_filter(filter(default_filter))
        .with_current_span(true)
        .with_span_list(true)
        .with_target(true)
        .try_init()
        .is_ok()
}

/// Like [`init`], but lines go through a bounded queue to a writer thread
/// that writes them in batches: a request pays for formatting its line, not
/// for a `write` system call. Keep the returned guard alive for the life of
/// the process: dropping it writes out what is queued and stops the thread.
/// Returns `None` when a subscriber was already installed.
pub fn init_non_blocking(default_filter: &str) -> Option<LogGuard> {
    let (tx, rx) = sync_channel::<Vec<u8>>(LOG_QUEUE_LINES_MAX);
    let installed = fmt()
        .json()
        .with_env_filter(filter(default_filter))
        .with_current_span(true)
        .with_span_list(true)
        .with_target(true)
        .with_writer(QueueWriter { tx: tx.clone() })
        .try_init()
        .is_ok();
    if !installed {
        return None;
    }
    let worker = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || drain(&rx, std::io::stdout()))
        .ok()?;
    Some(LogGuard {
        tx,
        worker: Some(worker),
    })
}

/// Writes queued lines in batches until an empty message (the stop mark).
fn drain(rx: &Receiver<Vec<u8>>, out: impl Write) {
    let mut out = std::io::BufWriter::with_capacity(LOG_BUFFER_BYTES, out);
    while let Ok(line) = rx.recv() {
        let mut stop = line.is_empty();
        let _ = out.write_all(&line);
        while !stop {
            match rx.try_recv() {
                Ok(next) if next.is_empty() => stop = true,
                Ok(next) => {
                    let _ = out.write_all(&next);
                }
                Err(_) => break,
            }
        }
        let _ = out.flush();
        if stop {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(LOG_BATCH_PAUSE_MS));
    }
}

/// Keeps the background log writer running; dropping it flushes and stops it.
#[derive(Debug)]
pub struct LogGuard {
    tx: SyncSender<Vec<u8>>,
    worker: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let _ = self.tx.send(Vec::new());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Hands each formatted line to the writer thread.
#[derive(Clone, Debug)]
struct QueueWriter {
    tx: SyncSender<Vec<u8>>,
}

impl Write for QueueWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !buf.is_empty() {
            // A closed queue means the process is shutting down: drop the line.
            let _ = self.tx.send(buf.to_vec());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = QueueWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Every queued line is written, in order, before the writer stops.
    #[test]
    fn the_writer_drains_everything_in_order() {
        let (tx, rx) = sync_channel::<Vec<u8>>(4);
        let sink = Sink::default();
        let out = sink.clone();
        let worker = std::thread::spawn(move || drain(&rx, out));
        let mut writer = QueueWriter { tx: tx.clone() };
        for i in 0..100 {
            writer.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        tx.send(Vec::new()).unwrap();
        worker.join().unwrap();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 100);
        assert_eq!(lines[0], "line 0");
        assert_eq!(lines[99], "line 99");
    }
}
