//! `models`: the embedded models as `arena models serve` runs them, over HTTP
//! as a client sees them.
//!
//! - generation: tokens per second of one streamed chat (the server's own
//!   `eval_count / eval_duration`, and as the client receives them), and the
//!   time to the first token for a prompt of about 200 tokens;
//! - embeddings: texts per second embedded one request at a time vs 32 texts
//!   in one request;
//! - memory: the server's resident set before and after both models load.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::{median, millis};

const ARENA: &str = "target/release/arena";

/// Tokens generated per measured answer.
const GENERATED: u64 = 128;

/// Texts per batch, and per run of single requests.
const BATCH: usize = 32;

struct Server {
    child: Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run(rounds: usize) -> anyhow::Result<()> {
    let server = start()?;
    let before = resident_mib(server.child.id())?;
    // Loads both models: the first chat and embedding pay for it.
    chat(&server, &prompt_of_about_200_tokens(), 1)?;
    embed(&server, &texts(1))?;
    let after = resident_mib(server.child.id())?;

    let mut server_rates = Vec::new();
    let mut client_rates = Vec::new();
    let mut first_tokens = Vec::new();
    let mut prompt_tokens = 0;
    for _ in 0..rounds {
        let answer = chat(
            &server,
            "Tell me about the history of the bicycle.",
            GENERATED,
        )?;
        server_rates.push(answer.server_tokens_per_second);
        client_rates.push(answer.client_tokens_per_second);
        let long = chat(&server, &prompt_of_about_200_tokens(), 1)?;
        first_tokens.push(long.first_token);
        prompt_tokens = long.prompt_tokens;
    }

    let mut single = Vec::new();
    let mut batched = Vec::new();
    let texts = texts(BATCH);
    for _ in 0..rounds {
        let started = Instant::now();
        for text in &texts {
            embed(&server, std::slice::from_ref(text))?;
        }
        single.push(started.elapsed());
        let started = Instant::now();
        embed(&server, &texts)?;
        batched.push(started.elapsed());
    }
    let per_second = |duration: Duration| BATCH as f64 / duration.as_secs_f64();
    let (single, batched) = (median(&single), median(&batched));

    println!("\n## embedded models ({rounds} rounds, medians)\n");
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| generation, server (eval_count / eval_duration) | {:.1} tokens/s |",
        median_f64(&server_rates)
    );
    println!(
        "| generation, as received ({GENERATED} tokens) | {:.1} tokens/s |",
        median_f64(&client_rates)
    );
    println!(
        "| time to first token, {prompt_tokens}-token prompt | {:.0} ms |",
        millis(median(&first_tokens))
    );
    println!(
        "| embeddings, one text per request | {:.1} texts/s |",
        per_second(single)
    );
    println!(
        "| embeddings, {BATCH} texts in one request | {:.1} texts/s |",
        per_second(batched)
    );
    println!(
        "| batched speed-up | {:.1}x |",
        single.as_secs_f64() / batched.as_secs_f64()
    );
    println!("| resident memory, before loading | {before:.0} MiB |");
    println!("| resident memory, both models loaded | {after:.0} MiB |");
    Ok(())
}

fn start() -> anyhow::Result<Server> {
    let mut child = Command::new(std::env::var("ARENA_BIN").unwrap_or_else(|_| ARENA.into()))
        .args([
            "--log-format",
            "json",
            "models",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {ARENA}; run `./dev build` first"))?;
    let stderr = BufReader::new(child.stderr.take().context("piped stderr")?);
    for line in stderr.lines() {
        let entry: Value = serde_json::from_str(&line?).unwrap_or_default();
        if entry["message"] == "listening" {
            let address = entry["address"].as_str().context("no address")?.to_owned();
            return Ok(Server { child, address });
        }
    }
    bail!("arena models serve exited before listening")
}

struct Answer {
    first_token: Duration,
    prompt_tokens: u64,
    server_tokens_per_second: f64,
    client_tokens_per_second: f64,
}

/// A streamed, greedy chat of exactly `tokens` tokens.
fn chat(server: &Server, prompt: &str, tokens: u64) -> anyhow::Result<Answer> {
    let body = json!({
        "model": "smollm2:135m",
        "messages": [{"role": "user", "content": prompt}],
        // No stop but the length: every answer is `tokens` long.
        "options": {"temperature": 0, "num_predict": tokens},
    });
    let (lines, started) = post(server, "/api/chat", &body)?;
    let mut first_token = None;
    let mut last_token = None;
    // Every line before the last carries one token.
    for (tokens, line) in lines.enumerate() {
        let line = line?;
        let line: Value = serde_json::from_str(&line)?;
        if let Some(error) = line["error"].as_str() {
            bail!("the chat failed: {error}");
        }
        if line["done"] == true {
            let eval_count = line["eval_count"].as_u64().unwrap_or(0);
            let eval_seconds = line["eval_duration"].as_u64().unwrap_or(1) as f64 / 1e9;
            let first = first_token.context("no token came")?;
            let last: Duration = last_token.unwrap_or(first);
            let streamed = (last - first).as_secs_f64();
            return Ok(Answer {
                first_token: first,
                prompt_tokens: line["prompt_eval_count"].as_u64().unwrap_or(0),
                server_tokens_per_second: eval_count as f64 / eval_seconds,
                client_tokens_per_second: (tokens - 1) as f64 / streamed.max(f64::EPSILON),
            });
        }
        let now = started.elapsed();
        first_token.get_or_insert(now);
        last_token = Some(now);
    }
    bail!("the stream ended without its last line")
}

fn embed(server: &Server, texts: &[String]) -> anyhow::Result<()> {
    let body = json!({ "model": "all-minilm", "input": texts });
    let (lines, _) = post(server, "/api/embed", &body)?;
    let answer: Value = serde_json::from_str(&lines.collect::<Result<String, _>>()?)?;
    match answer["embeddings"].as_array() {
        Some(vectors) if vectors.len() == texts.len() => Ok(()),
        _ => bail!("the embedding failed: {answer}"),
    }
}

/// POSTs `body` with HTTP/1.0 (no chunked encoding to undo); the body's lines
/// as they arrive, and when the request was sent.
fn post(
    server: &Server,
    path: &str,
    body: &Value,
) -> anyhow::Result<(std::io::Lines<BufReader<TcpStream>>, Instant)> {
    let body = body.to_string();
    let mut stream = TcpStream::connect(&server.address)?;
    stream.set_nodelay(true)?;
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        server.address,
        body.len()
    );
    let started = Instant::now();
    stream.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    if !status.contains(" 200 ") {
        bail!("{path} answered {status}");
    }
    // Skip the headers.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    Ok((reader.lines(), started))
}

/// A user message that SmolLM2's tokenizer makes about 200 tokens of
/// (the chat template adds the rest).
fn prompt_of_about_200_tokens() -> String {
    "The committee met on Tuesday to review the proposal for the new library, \
     which would replace the old building on the corner of Main Street. "
        .repeat(7)
        + "Summarise the decision in one sentence."
}

/// `count` different sentences of ordinary length.
fn texts(count: usize) -> Vec<String> {
    (0..count)
        .map(|n| {
            format!(
                "Sentence number {n} describes a small town where the baker opens at six \
                 and the market sells {} kinds of apples.",
                n % 7 + 2
            )
        })
        .collect()
}

fn resident_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .context("no VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib / 1024.0)
}

fn median_f64(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}
