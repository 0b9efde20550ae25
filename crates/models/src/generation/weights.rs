//! Reads the GGUF into f32 weights, and describes it.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Device;
use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{Content, TensorInfo, Value};
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};

use super::ModelDescription;

/// The GGUF's header and the model, every weight dequantized to f32.
///
/// Why f32: candle has no SIMD kernel for Q4_1, so its f32 matmuls run
/// SmolLM2 several times faster, for ~4x the memory (~0.65 GB). candle's own
/// switch, the `CANDLE_DEQUANTIZE_ALL` environment variable, would need
/// `set_var` in a multi-threaded process, which is unsound. Instead
/// `from_gguf` is handed a GGUF whose tensors all say F32 (which it keeps as
/// plain tensors), read from a reader that dequantizes each tensor of the
/// real file when asked for it, so the f32 weights are never in memory twice.
pub(super) fn load(path: &Path) -> Result<(Content, ModelWeights)> {
    let mut file = BufReader::new(File::open(path)?);
    let content = Content::read(&mut file)?;
    let mut reader = F32Reader::new(&content, file)?;
    let f32_content = Content {
        magic: content.magic,
        metadata: content.metadata.clone(),
        tensor_infos: reader.tensor_infos(),
        tensor_data_offset: 0,
    };
    let weights = ModelWeights::from_gguf(f32_content, &mut reader, &Device::Cpu)?;
    Ok((content, weights))
}

/// The tensor data of a GGUF as if every tensor were stored as f32, laid out
/// back to back from offset 0.
struct F32Reader<'a, R> {
    source: &'a Content,
    file: R,
    /// (name, start, end) of each tensor's f32 bytes, in offset order.
    tensors: Vec<(&'a str, u64, u64)>,
    pos: u64,
    /// The tensor being read and its f32 bytes.
    current: Option<(usize, Vec<u8>)>,
}

impl<'a, R: Read + Seek> F32Reader<'a, R> {
    fn new(source: &'a Content, file: R) -> Result<Self> {
        let mut names: Vec<&str> = source.tensor_infos.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut tensors = Vec::with_capacity(names.len());
        let mut end = 0u64;
        for name in names {
            let start = end;
            let bytes = source.tensor_infos[name].shape.elem_count() * size_of::<f32>();
            end = start
                .checked_add(bytes as u64)
                .context("tensor sizes overflow")?;
            tensors.push((name, start, end));
        }
        Ok(Self {
            source,
            file,
            tensors,
            pos: 0,
            current: None,
        })
    }

    fn tensor_infos(&self) -> std::collections::HashMap<String, TensorInfo> {
        self.tensors
            .iter()
            .map(|&(name, start, _)| {
                let info = TensorInfo {
                    ggml_dtype: GgmlDType::F32,
                    shape: self.source.tensor_infos[name].shape.clone(),
                    offset: start,
                };
                (name.to_owned(), info)
            })
            .collect()
    }

    fn len(&self) -> u64 {
        self.tensors.last().map_or(0, |&(_, _, end)| end)
    }

    fn dequantize(&mut self, name: &str) -> candle_core::Result<Vec<u8>> {
        let tensor = self.source.tensor(&mut self.file, name, &Device::Cpu)?;
        let values = tensor
            .dequantize(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

impl<R: Read + Seek> Read for F32Reader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let index = self.tensors.partition_point(|&(_, _, end)| end <= self.pos);
        let Some(&(name, start, _)) = self.tensors.get(index) else {
            return Ok(0);
        };
        if self.current.as_ref().is_none_or(|(i, _)| *i != index) {
            let bytes = self.dequantize(name).map_err(io::Error::other)?;
            self.current = Some((index, bytes));
        }
        let Some((_, bytes)) = &self.current else {
            return Ok(0);
        };
        // Tensors lie back to back, so `start <= pos < end` here.
        let from = usize::try_from(self.pos - start).map_err(io::Error::other)?;
        let available = bytes.get(from..).unwrap_or_default();
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for F32Reader<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(delta) => self.len().checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        self.pos = pos.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad seek"))?;
        Ok(self.pos)
    }
}

/// The model's description, from the GGUF header.
pub(super) fn describe(content: &Content, file_size: u64) -> Result<ModelDescription> {
    let md = &content.metadata;
    let get = |key: &str| md.get(key).with_context(|| format!("no {key} in the GGUF"));
    let parameter_count: u64 = content
        .tensor_infos
        .values()
        .map(|info| info.shape.elem_count() as u64)
        .sum();
    let quantization = match md.get("general.file_type") {
        Some(file_type) => file_type_name(file_type.to_u32()?).to_owned(),
        None => "unknown".to_owned(),
    };

    // As Ollama shows `model_info` (without `verbose`): arrays elided to
    // null, the name and chat template left out, the parameter count added.
    let mut metadata: serde_json::Map<String, serde_json::Value> = md
        .iter()
        .filter(|(key, _)| !matches!(key.as_str(), "general.name" | "tokenizer.chat_template"))
        .map(|(key, value)| (key.clone(), json(value)))
        .collect();
    metadata.insert("general.parameter_count".to_owned(), parameter_count.into());
    metadata.sort_keys();

    Ok(ModelDescription {
        architecture: get("general.architecture")?.to_string()?.clone(),
        parameter_count,
        quantization,
        context_length: (get("llama.context_length")?.to_u32()? as usize).min(MAX_SEQ_LEN),
        embedding_length: get("llama.embedding_length")?.to_u32()? as usize,
        file_size,
        metadata,
    })
}

fn json(value: &Value) -> serde_json::Value {
    match value {
        Value::U8(v) => (*v).into(),
        Value::I8(v) => (*v).into(),
        Value::U16(v) => (*v).into(),
        Value::I16(v) => (*v).into(),
        Value::U32(v) => (*v).into(),
        Value::I32(v) => (*v).into(),
        Value::U64(v) => (*v).into(),
        Value::I64(v) => (*v).into(),
        // Through the shortest decimal that round-trips as f32, as Go prints
        // a float32: 1e-05, not 9.999999747378752e-06.
        Value::F32(v) => v
            .to_string()
            .parse::<f64>()
            .map_or(serde_json::Value::Null, Into::into),
        Value::F64(v) => (*v).into(),
        Value::Bool(v) => (*v).into(),
        Value::String(v) => v.clone().into(),
        Value::Array(_) => serde_json::Value::Null,
    }
}

/// llama.cpp's names for `general.file_type` (`llama_ftype`).
fn file_type_name(file_type: u32) -> &'static str {
    match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => "unknown",
    }
}
