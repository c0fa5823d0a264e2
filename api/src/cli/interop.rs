//! conda-forge interop: Cirun `.access.yml` import/export and admin-requests files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use ledger::dsse::Envelope;
use ledger::statement::Statement;
use projector::interop::StatementContext;
use projector::ResourceView;
use serde::Deserialize;

use super::error::{CliError, CliResult};
use super::signer::{read_input_file, ServerOpt, Signer, SignerOpts};
use crate::client::ClientError;

/// Import a Cirun .access.yml as admin-signed resource and grant events (a migration).
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  grantline import-cirun-access --key admin.key .cirun/.access.yml\n\nStatement ids are derived from the file, so running the import again adds nothing new."
)]
pub(crate) struct ImportArgs {
    #[command(flatten)]
    pub signer: SignerOpts,
    /// The .access.yml file.
    pub file: PathBuf,
}

/// Write the current allocations as a Cirun .access.yml.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  grantline export-cirun-access --out .cirun/.access.yml")]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    pub server: ServerOpt,
    /// Output file (default: stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Write, per project, the runner labels (resources) it may use now, as JSON: the list that
/// feedstocks' `github_actions_labels` must stay within.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  grantline export-runner-labels --out runner-labels.json")]
pub(crate) struct ExportRunnerLabelsArgs {
    #[command(flatten)]
    pub server: ServerOpt,
    /// Output file (default: stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Id prefix of the statements one import of this file makes.
pub(super) const CIRUN_IMPORT_ID_PREFIX: &str = "cirun-import:";

#[derive(Deserialize)]
struct ResourceList {
    resources: Vec<ResourceView>,
}

pub(super) fn import(a: ImportArgs) -> CliResult {
    let yaml = read_input_file(&a.file)?;
    let s = Signer::open(&a.signer)?;
    let ctx = context(&s, CIRUN_IMPORT_ID_PREFIX);
    // Decided against the ledger's resources before anything is posted, so a conflict
    // leaves the ledger as it was.
    let defined: ResourceList = s.client.get_json("/v1/resources", &[])?;
    let plan = projector::interop::plan_cirun_import(&yaml, &ctx, &defined.resources)
        .map_err(|e| CliError::new(format!("{}: {e}\nnothing was imported", a.file.display())))?;
    let (new, existing) = post_statements(&s, &plan.statements)?;
    for resource in &plan.reused {
        println!("resource {resource:?} is already defined as the file needs: reused");
    }
    let existing = existing + plan.reused.len();
    println!("imported {}: {new} new events, {existing} already logged", a.file.display());
    Ok(())
}

pub(super) fn export(a: ExportArgs) -> CliResult {
    let client = a.server.client()?;
    let yaml = client.get_text("/v1/exports/cirun-access.yml")?;
    match a.out {
        Some(path) => {
            std::fs::write(&path, yaml).map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{yaml}"),
    }
    Ok(())
}

pub(super) fn export_runner_labels(a: ExportRunnerLabelsArgs) -> CliResult {
    let client = a.server.client()?;
    let labels: BTreeMap<String, Vec<String>> = client.get_json("/v1/exports/runner-labels.json", &[])?;
    let json = serde_json::to_string_pretty(&labels).map_err(|e| CliError::new(e.to_string()))? + "\n";
    match a.out {
        Some(path) => {
            std::fs::write(&path, json).map_err(|e| CliError::new(format!("cannot write {}: {e}", path.display())))?;
            eprintln!("wrote {} ({} projects)", path.display(), labels.len());
        }
        None => print!("{json}"),
    }
    Ok(())
}

/// `grantline request --from-admin-request FILE`: the statements the file means, posted.
pub(super) fn post_admin_request(s: &Signer, path: &Path) -> CliResult {
    let yaml = read_input_file(path)?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("file");
    let stem: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect();
    // The file is interpreted against the current state (e.g. which grant a revoke ends).
    let state = s.client.fetch_state()?;
    let ctx = context(s, &format!("admin-request:{stem}:"));
    let statements = projector::interop::admin_request_statements(&yaml, &state, &ctx)
        .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
    let (new, existing) = post_statements(s, &statements)?;
    for st in &statements {
        let what = st.data.get("request").or_else(|| st.data.get("grant")).and_then(|v| v.as_str()).unwrap_or("");
        println!("{} {what} ({})", st.kind, st.id);
    }
    println!("{}: {new} new events, {existing} already logged", path.display());
    Ok(())
}

fn context(s: &Signer, id_prefix: &str) -> StatementContext {
    StatementContext {
        ledger: s.origin.clone(),
        actor: s.key.name().to_string(),
        now_ms: crate::now_ms(),
        id_prefix: id_prefix.to_string(),
    }
}

/// Signs and posts statements in order. Their ids are deterministic, so one that is already
/// logged (from an earlier run, with an older `issued_at`) counts as done when its type and
/// data are the same. Returns (new, already logged).
pub(super) fn post_statements(s: &Signer, statements: &[Statement]) -> Result<(usize, usize), CliError> {
    let (mut new, mut existing) = (0, 0);
    for st in statements {
        let envelope = Envelope::sign(st.to_payload(), &[&s.key]);
        match s.client.post_envelope(envelope.canonical_json()) {
            Ok(sub) if sub.new => new += 1,
            Ok(_) => existing += 1,
            Err(ClientError::Problem(p)) if p.status == 409 => {
                let logged = s.client.record_by_id(&st.id)?;
                let same = logged.is_some_and(|r| {
                    r.statement.get("type").and_then(|t| t.as_str()) == Some(st.kind.as_str())
                        && r.statement.get("data") == Some(&st.data)
                });
                if !same {
                    return Err(CliError::new(format!(
                        "id {:?} is already logged with different content; nothing more was posted",
                        st.id
                    )));
                }
                existing += 1;
            }
            Err(e) => {
                let mut err = CliError::from(e);
                err.message = format!("{} {:?} was refused after {new} new events: {}", st.kind, st.id, err.message);
                return Err(err);
            }
        }
    }
    Ok((new, existing))
}
