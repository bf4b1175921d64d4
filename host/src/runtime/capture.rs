//! What a plugin logs or prints during one call: captured, bounded in size,
//! and handed back with the call's result so the caller can tag it (tenant,
//! connection, plugin) and keep it in the integration log.

use bytes::Bytes;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Where a captured line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogSource {
    /// The plugin's `log` import.
    Plugin,
    /// The plugin's standard output.
    Stdout,
    /// The plugin's standard error (panic messages land here).
    Stderr,
    /// The host, about the plugin (a denied request, a fault).
    Host,
}

/// Severity of a captured line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub source: LogSource,
    pub level: LogLevel,
    pub message: String,
}

impl LogLine {
    /// A warning the host writes about a call.
    pub fn host(message: String) -> LogLine {
        LogLine {
            source: LogSource::Host,
            level: LogLevel::Warn,
            message,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    lines: Vec<LogLine>,
    /// Bytes of the plugin's own lines kept (against the call's limit).
    used: usize,
    /// The plugin's own lines dropped over the limit.
    dropped: usize,
    /// Bytes and count of host lines kept (against their own bound).
    host_used: usize,
    host_kept: usize,
    host_dropped: usize,
    /// The line that explains why the call failed: always kept, last.
    fault: Option<LogLine>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// The capture of one call, shared by the store's state and its streams.
#[derive(Debug, Clone)]
pub struct Capture {
    inner: Arc<Mutex<Inner>>,
    limit: usize,
}

/// Longest single line kept; longer ones are cut.
const MAX_LINE: usize = 4096;
/// Host lines (denied requests and the like) have their own bound, apart
/// from the plugin's, so that a plugin provoking them cannot grow its log
/// without limit, nor crowd out its own lines: at most this many bytes...
pub const MAX_HOST_LOG_BYTES: usize = 16 << 10;
/// ...and this many lines per call.
pub const MAX_HOST_LOG_LINES: usize = 64;
/// Longest host line; host lines quote plugin-controlled text briefly.
const MAX_HOST_LINE: usize = 1024;

/// `text` cut to at most `max` bytes (at a character boundary), with `…`
/// when cut: how the host quotes text a plugin controls.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

fn cut_line(line: &mut LogLine, max: usize) {
    if line.message.len() > max {
        let mut cut = max;
        while !line.message.is_char_boundary(cut) {
            cut -= 1;
        }
        line.message.truncate(cut);
        line.message.push_str(" …[cut]");
    }
}

impl Capture {
    /// A capture keeping at most `limit` bytes of messages.
    pub fn new(limit: usize) -> Self {
        Capture {
            inner: Arc::default(),
            limit,
        }
    }

    fn push(inner: &mut Inner, limit: usize, line: LogLine) {
        let mut line = line;
        if line.source == LogSource::Host {
            cut_line(&mut line, MAX_HOST_LINE);
            if inner.host_kept >= MAX_HOST_LOG_LINES
                || inner.host_used + line.message.len() > MAX_HOST_LOG_BYTES
            {
                inner.host_dropped += 1;
                return;
            }
            inner.host_kept += 1;
            inner.host_used += line.message.len();
            inner.lines.push(line);
            return;
        }
        cut_line(&mut line, MAX_LINE);
        if inner.used + line.message.len() > limit {
            inner.dropped += 1;
            return;
        }
        inner.used += line.message.len();
        inner.lines.push(line);
    }

    /// Records a line from the plugin's `log` import.
    pub fn plugin_line(&self, level: LogLevel, message: String) {
        let mut inner = self.inner.lock().unwrap();
        Self::push(
            &mut inner,
            self.limit,
            LogLine {
                source: LogSource::Plugin,
                level,
                message,
            },
        );
    }

    /// Records a line the host writes about the plugin.
    pub fn host_line(&self, message: String) {
        let mut inner = self.inner.lock().unwrap();
        Self::push(
            &mut inner,
            self.limit,
            LogLine {
                source: LogSource::Host,
                level: LogLevel::Warn,
                message,
            },
        );
    }

    /// Records the line that explains why the call failed. It is always
    /// kept, whatever was dropped before it, and comes last; a later fault
    /// line replaces an earlier one.
    pub fn fault_line(&self, message: String) {
        let mut line = LogLine {
            source: LogSource::Host,
            level: LogLevel::Error,
            message,
        };
        cut_line(&mut line, MAX_LINE);
        self.inner.lock().unwrap().fault = Some(line);
    }

    fn write_stream(&self, source: LogSource, bytes: &[u8]) {
        let mut inner = self.inner.lock().unwrap();
        let inner = &mut *inner;
        let buf = match source {
            LogSource::Stdout => &mut inner.stdout,
            _ => &mut inner.stderr,
        };
        // Bounded even when the plugin prints without newlines.
        let room = (self.limit + MAX_LINE).saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        let mut complete = Vec::new();
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            complete.push(String::from_utf8_lossy(&line[..i]).trim_end().to_string());
        }
        for message in complete {
            Self::push_output(inner, self.limit, source, message);
        }
    }

    /// A line of stdout (info) or stderr (warn).
    fn push_output(inner: &mut Inner, limit: usize, source: LogSource, message: String) {
        let level = if source == LogSource::Stdout {
            LogLevel::Info
        } else {
            LogLevel::Warn
        };
        Self::push(
            inner,
            limit,
            LogLine {
                source,
                level,
                message,
            },
        );
    }

    /// All lines so far, unfinished stdout/stderr lines included, and a note
    /// of how many were dropped over the limit.
    pub fn lines(&self) -> Vec<LogLine> {
        let mut inner = self.inner.lock().unwrap();
        let inner = &mut *inner;
        for source in [LogSource::Stdout, LogSource::Stderr] {
            let buf = match source {
                LogSource::Stdout => std::mem::take(&mut inner.stdout),
                _ => std::mem::take(&mut inner.stderr),
            };
            if !buf.is_empty() {
                let message = String::from_utf8_lossy(&buf).trim_end().to_string();
                Self::push_output(inner, self.limit, source, message);
            }
        }
        let mut lines = inner.lines.clone();
        if inner.dropped > 0 {
            lines.push(LogLine {
                source: LogSource::Host,
                level: LogLevel::Warn,
                message: format!(
                    "{} more lines dropped: the plugin logged over {} bytes in one call",
                    inner.dropped, self.limit
                ),
            });
        }
        if inner.host_dropped > 0 {
            lines.push(LogLine {
                source: LogSource::Host,
                level: LogLevel::Warn,
                message: format!(
                    "{} more host lines dropped: over {MAX_HOST_LOG_LINES} lines or {MAX_HOST_LOG_BYTES} bytes of host notes about the plugin in one call",
                    inner.host_dropped
                ),
            });
        }
        lines.extend(inner.fault.clone());
        lines
    }

    /// A stream for the guest's stdout or stderr.
    pub fn stream(&self, source: LogSource) -> CaptureStream {
        CaptureStream {
            capture: self.clone(),
            source,
        }
    }
}

/// The guest's stdout or stderr, feeding a [`Capture`]. Writes never fail,
/// so a chatty plugin is cut, not crashed.
#[derive(Clone)]
pub struct CaptureStream {
    capture: Capture,
    source: LogSource,
}

impl IsTerminal for CaptureStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CaptureStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CaptureStream {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CaptureStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.capture.write_stream(self.source, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl AsyncWrite for CaptureStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.capture.write_stream(self.source, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_is_bounded_and_says_so() {
        let c = Capture::new(100);
        for i in 0..50 {
            c.plugin_line(LogLevel::Info, format!("line number {i}"));
        }
        let mut s = c.stream(LogSource::Stdout);
        OutputStream::write(&mut s, Bytes::from_static(b"partial")).unwrap();
        let lines = c.lines();
        let kept: usize = lines
            .iter()
            .filter(|l| l.source == LogSource::Plugin)
            .map(|l| l.message.len())
            .sum();
        assert!(kept <= 100);
        assert!(lines.last().unwrap().message.contains("dropped"));
        c.host_line("a host note".into());
        assert!(c.lines().iter().any(|l| l.message == "a host note"));
    }

    #[test]
    fn p6_host_lines_have_their_own_bound_and_the_fault_line_is_always_kept() {
        let c = Capture::new(1024);
        for i in 0..20_000 {
            c.host_line(format!("denied request {i} to {}", "h".repeat(4000)));
        }
        c.plugin_line(LogLevel::Info, "the plugin's own line".into());
        c.fault_line("the plugin crashed: at the end".into());
        let lines = c.lines();
        let host: Vec<_> = lines
            .iter()
            .filter(|l| l.message.starts_with("denied request"))
            .collect();
        assert_eq!(
            host.len(),
            MAX_HOST_LOG_LINES.min(MAX_HOST_LOG_BYTES / (MAX_HOST_LINE + " …[cut]".len()))
        );
        let total: usize = lines.iter().map(|l| l.message.len()).sum();
        assert!(
            total <= 1024 + MAX_HOST_LOG_BYTES + 2 * MAX_LINE,
            "{total} bytes"
        );
        // The plugin's own line is not crowded out by the host's.
        assert!(lines.iter().any(|l| l.message == "the plugin's own line"));
        let dropped = 20_000 - host.len();
        assert!(
            lines.iter().any(|l| l
                .message
                .starts_with(&format!("{dropped} more host lines dropped"))),
            "{lines:?}"
        );
        assert_eq!(
            lines.last().unwrap().message,
            "the plugin crashed: at the end"
        );
        assert_eq!(lines.last().unwrap().level, LogLevel::Error);
    }

    #[test]
    fn clip_cuts_at_a_character_boundary() {
        assert_eq!(clip("short", 10), "short");
        let c = clip(&"é".repeat(100), 11);
        assert!(c.len() <= 11 && c.ends_with('…'), "{c}");
    }

    #[test]
    fn stdout_is_split_into_lines() {
        let c = Capture::new(10_000);
        let mut s = c.stream(LogSource::Stderr);
        OutputStream::write(&mut s, Bytes::from_static(b"a\nb")).unwrap();
        OutputStream::write(&mut s, Bytes::from_static(b"c\n")).unwrap();
        let msgs: Vec<_> = c.lines().into_iter().map(|l| l.message).collect();
        assert_eq!(msgs, ["a", "bc"]);
    }
}
