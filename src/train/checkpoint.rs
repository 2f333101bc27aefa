//! Checkpoints in safetensors, loadable by the Python `safetensors` package.
//!
//! Two files per checkpoint:
//! - `NAME.safetensors`: every model tensor (weights, biases, BN γ/β and running
//!   statistics) under its parameter name, f32 little-endian, plus metadata: `format`
//!   (`rca-gpu-checkpoint`), `format_version`, `variant`, `width`, `input_size`, `epoch`,
//!   `history` (the metric history, JSON) and `sha256` — the SHA-256 of the tensor data,
//!   taken over the tensors in name order, each as its raw little-endian bytes.
//! - `NAME.optim.safetensors`: the optimizer state that makes a resumed run continue
//!   exactly: Adam's `m.<name>` and `v.<name>`, and metadata `step`, `lr`, `rng` (the
//!   training loop's random state, opaque text), `model_sha256` (which model file it
//!   belongs to) and its own `sha256`.
//!
//! Both are written atomically: to a temporary file in the same folder, flushed to disk,
//! then renamed over the target, so an interrupted write never leaves a torn checkpoint.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};

use crate::model::{ModelConfig, Variant};

pub const FORMAT: &str = "rca-gpu-checkpoint";
pub const OPTIM_FORMAT: &str = "rca-gpu-optimizer";
pub const FORMAT_VERSION: u32 = 1;

/// Why a checkpoint could not be written or used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an rca-gpu checkpoint: {reason}")]
    NotACheckpoint { path: PathBuf, reason: String },
    #[error(
        "{path} has checkpoint format version {found}; this rca-gpu reads version {supported} (use the rca-gpu release that wrote it, or retrain)"
    )]
    Version {
        path: PathBuf,
        found: String,
        supported: u32,
    },
    #[error("{path} is a checkpoint of {what} {found}, but {expected} was asked for")]
    Mismatch {
        path: PathBuf,
        what: &'static str,
        found: String,
        expected: String,
    },
    #[error("{path} is corrupted: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

type Result<T> = std::result::Result<T, CheckpointError>;

/// One named tensor on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A model checkpoint as read from disk.
#[derive(Clone, Debug)]
pub struct ModelCheckpoint {
    pub config: ModelConfig,
    pub epoch: usize,
    /// The metric history (JSON), as the trainer wrote it.
    pub history: serde_json::Value,
    /// In the order they are stored (sorted by name).
    pub tensors: Vec<NamedTensor>,
    pub sha256: String,
}

impl ModelCheckpoint {
    pub fn get(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Adam's state and what else a resumed run needs.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    pub step: u64,
    pub lr: f32,
    /// The training loop's random state, opaque to the checkpoint.
    pub rng: String,
    /// First moments, by parameter name.
    pub m: Vec<NamedTensor>,
    /// Second moments, by parameter name.
    pub v: Vec<NamedTensor>,
}

/// The optimizer file that belongs beside a model file.
pub fn optimizer_path(model_path: &Path) -> PathBuf {
    let stem = model_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    model_path.with_file_name(format!("{stem}.optim.safetensors"))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// SHA-256 over the tensors in name order, each as raw little-endian f32 bytes.
fn digest(tensors: &[&NamedTensor]) -> String {
    let mut sorted: Vec<&&NamedTensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut h = Sha256::new();
    for t in sorted {
        for v in &t.data {
            h.update(v.to_le_bytes());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn to_bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Serialise and write atomically: temp file, fsync, rename.
fn write_atomic(
    path: &Path,
    tensors: &[(String, &NamedTensor)],
    meta: HashMap<String, String>,
) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| (name.clone(), to_bytes(&t.data), t.shape.clone()))
        .collect();
    let views = bytes
        .iter()
        .map(|(name, b, shape)| {
            TensorView::new(Dtype::F32, shape.clone(), b).map(|v| (name.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("cannot serialise: {e}"),
        })?;
    let data = safetensors::serialize(views, Some(meta)).map_err(|e| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("cannot serialise: {e}"),
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io(dir))?;
    }
    if let Err(e) = crate::atomic::write(path, &data) {
        return Err(CheckpointError::Io {
            path: path.to_path_buf(),
            source: e,
        });
    }
    // Make the rename itself durable where the platform allows it.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Write a model checkpoint.
pub fn save_model(
    path: &Path,
    config: &ModelConfig,
    epoch: usize,
    history: &serde_json::Value,
    tensors: &[NamedTensor],
) -> Result<String> {
    let sha = digest(&tensors.iter().collect::<Vec<_>>());
    let meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("variant".to_string(), config.variant.name().to_string()),
        ("width".to_string(), config.width.to_string()),
        ("input_size".to_string(), config.size.to_string()),
        ("epoch".to_string(), epoch.to_string()),
        ("history".to_string(), history.to_string()),
        ("sha256".to_string(), sha.clone()),
    ]);
    let named: Vec<(String, &NamedTensor)> = tensors.iter().map(|t| (t.name.clone(), t)).collect();
    write_atomic(path, &named, meta)?;
    Ok(sha)
}

/// Write the optimizer state beside `model_path` (see [`optimizer_path`]).
pub fn save_optimizer(model_path: &Path, model_sha256: &str, state: &OptimizerState) -> Result<()> {
    let path = optimizer_path(model_path);
    let mut named: Vec<(String, &NamedTensor)> = Vec::new();
    for t in &state.m {
        named.push((format!("m.{}", t.name), t));
    }
    for t in &state.v {
        named.push((format!("v.{}", t.name), t));
    }
    let all: Vec<&NamedTensor> = named.iter().map(|(_, t)| *t).collect();
    // The digest covers m then v (names alone would collide between the two).
    let sha = format!(
        "{}{}",
        digest(&all[..state.m.len()]),
        digest(&all[state.m.len()..])
    );
    let meta = HashMap::from([
        ("format".to_string(), OPTIM_FORMAT.to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("step".to_string(), state.step.to_string()),
        ("lr".to_string(), format!("{:e}", state.lr)),
        ("lr_bits".to_string(), state.lr.to_bits().to_string()),
        ("rng".to_string(), state.rng.clone()),
        ("model_sha256".to_string(), model_sha256.to_string()),
        ("sha256".to_string(), sha),
    ]);
    write_atomic(&path, &named, meta)
}

struct Raw {
    meta: HashMap<String, String>,
    tensors: Vec<NamedTensor>,
}

fn read(path: &Path, format: &str) -> Result<Raw> {
    let bytes = fs::read(path).map_err(io(path))?;
    read_bytes(&bytes, path, format)
}

/// [`read`] of bytes already in memory; `path` names them in errors.
fn read_bytes(bytes: &[u8], path: &Path, format: &str) -> Result<Raw> {
    let not = |reason: String| CheckpointError::NotACheckpoint {
        path: path.to_path_buf(),
        reason,
    };
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        if bytes.len() < 8 {
            not(format!("only {} bytes", bytes.len()))
        } else {
            CheckpointError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("not a readable safetensors file ({e})"),
            }
        }
    })?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| not(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    match meta.get("format") {
        Some(f) if f == format => {}
        Some(f) => return Err(not(format!("its format is '{f}', expected '{format}'"))),
        None => return Err(not("safetensors file without rca-gpu metadata".into())),
    }
    match meta.get("format_version") {
        Some(v) if v.parse() == Ok(FORMAT_VERSION) => {}
        found => {
            return Err(CheckpointError::Version {
                path: path.to_path_buf(),
                found: found.cloned().unwrap_or_else(|| "(none)".into()),
                supported: FORMAT_VERSION,
            });
        }
    }
    let mut tensors = Vec::new();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    for name in names {
        let view = st.tensor(&name).map_err(|e| not(e.to_string()))?;
        if view.dtype() != Dtype::F32 {
            return Err(not(format!("tensor {name} is {:?}, not F32", view.dtype())));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.push(NamedTensor {
            name,
            shape: view.shape().to_vec(),
            data,
        });
    }
    Ok(Raw { meta, tensors })
}

fn field<T: std::str::FromStr>(
    path: &Path,
    meta: &HashMap<String, String>,
    key: &str,
) -> Result<T> {
    meta.get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("metadata field '{key}' is missing or malformed"),
        })
}

/// Read a model checkpoint, verify its checksum, and, if `expected` is given, that it is
/// of that variant, width and input size.
pub fn load_model(path: &Path, expected: Option<&ModelConfig>) -> Result<ModelCheckpoint> {
    let bytes = fs::read(path).map_err(io(path))?;
    load_model_bytes(&bytes, path, expected)
}

/// [`load_model`] of a checkpoint's bytes (the model built into the binary); `path` names
/// it in errors.
pub fn load_model_bytes(
    bytes: &[u8],
    path: &Path,
    expected: Option<&ModelConfig>,
) -> Result<ModelCheckpoint> {
    let raw = read_bytes(bytes, path, FORMAT)?;
    let variant_name: String = field(path, &raw.meta, "variant")?;
    let variant: Variant = variant_name
        .parse()
        .map_err(|e: String| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason: e,
        })?;
    let width: usize = field(path, &raw.meta, "width")?;
    let size: usize = field(path, &raw.meta, "input_size")?;
    let config = ModelConfig::new(variant, width, size).map_err(|e| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason: e,
    })?;
    if let Some(want) = expected {
        let checks = [
            (
                "variant",
                variant.name().to_string(),
                want.variant.name().to_string(),
            ),
            ("width F =", width.to_string(), want.width.to_string()),
            ("input size", size.to_string(), want.size.to_string()),
        ];
        for (what, found, expected) in checks {
            if found != expected {
                return Err(CheckpointError::Mismatch {
                    path: path.to_path_buf(),
                    what,
                    found,
                    expected,
                });
            }
        }
    }
    let sha: String = field(path, &raw.meta, "sha256")?;
    let actual = digest(&raw.tensors.iter().collect::<Vec<_>>());
    if sha != actual {
        return Err(CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("tensor data SHA-256 is {actual}, the file says {sha}"),
        });
    }
    let history = raw
        .meta
        .get("history")
        .map(|h| serde_json::from_str(h))
        .transpose()
        .map_err(|e| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("metric history is not JSON: {e}"),
        })?
        .unwrap_or(serde_json::Value::Null);
    Ok(ModelCheckpoint {
        config,
        epoch: field(path, &raw.meta, "epoch")?,
        history,
        tensors: raw.tensors,
        sha256: sha,
    })
}

/// Read the optimizer state beside `model_path`, checking it belongs to that model file.
pub fn load_optimizer(model_path: &Path, model_sha256: &str) -> Result<OptimizerState> {
    let path = optimizer_path(model_path);
    let raw = read(&path, OPTIM_FORMAT)?;
    let belongs: String = field(&path, &raw.meta, "model_sha256")?;
    if belongs != model_sha256 {
        return Err(CheckpointError::Mismatch {
            path: path.clone(),
            what: "model file with SHA-256",
            found: belongs,
            expected: model_sha256.to_string(),
        });
    }
    let (mut m, mut v) = (Vec::new(), Vec::new());
    for mut t in raw.tensors {
        if let Some(name) = t.name.strip_prefix("m.") {
            t.name = name.to_string();
            m.push(t);
        } else if let Some(name) = t.name.strip_prefix("v.") {
            t.name = name.to_string();
            v.push(t);
        } else {
            return Err(CheckpointError::Corrupt {
                path,
                reason: format!("unexpected tensor '{}'", t.name),
            });
        }
    }
    let sha: String = field(&path, &raw.meta, "sha256")?;
    let actual = format!(
        "{}{}",
        digest(&m.iter().collect::<Vec<_>>()),
        digest(&v.iter().collect::<Vec<_>>())
    );
    if sha != actual {
        return Err(CheckpointError::Corrupt {
            path,
            reason: "optimizer state SHA-256 does not match its data".into(),
        });
    }
    let lr_bits: u32 = field(&path, &raw.meta, "lr_bits")?;
    Ok(OptimizerState {
        step: field(&path, &raw.meta, "step")?,
        lr: f32::from_bits(lr_bits),
        rng: raw.meta.get("rng").cloned().unwrap_or_default(),
        m,
        v,
    })
}

/// The model's tensors read back from the device, named, for [`save_model`].
pub fn named_tensors(params: &crate::nn::Params) -> crate::Result<Vec<NamedTensor>> {
    params
        .iter()
        .map(|(info, t)| {
            Ok(NamedTensor {
                name: info.name.clone(),
                shape: info.shape.clone(),
                data: t.to_vec()?,
            })
        })
        .collect()
}

/// Values for every parameter of `spec`, in declaration order, from a checkpoint; a
/// missing tensor or one of another shape is an error naming it.
pub fn values_for(
    path: &Path,
    ck: &ModelCheckpoint,
    spec: &crate::nn::ParamSpec,
) -> Result<Vec<Vec<f32>>> {
    spec.params()
        .iter()
        .map(|p| {
            let t = ck.get(&p.name).ok_or_else(|| CheckpointError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("tensor '{}' is missing", p.name),
            })?;
            if t.shape != p.shape {
                return Err(CheckpointError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!(
                        "tensor '{}' has shape {:?}, the model needs {:?}",
                        p.name, t.shape, p.shape
                    ),
                });
            }
            Ok(t.data.clone())
        })
        .collect()
}
