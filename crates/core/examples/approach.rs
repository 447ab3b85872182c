//! Loads the example cases and feeds a scripted approach through the engine,
//! printing every event. Until the `kordon` server exists this is what the
//! README's "run" command shows.
//!
//! ```text
//! cargo run --release -p kordon-core --example approach [-- --json] [CASES_DIR] [SCENARIO]
//! ```

use std::error::Error;
use std::path::{Path, PathBuf};

use kordon_core::{validate_case, Case, Engine, EngineConfig, Event, Input};

fn main() -> Result<(), Box<dyn Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut json = false;
    let mut paths = Vec::new();
    for arg in std::env::args().skip(1) {
        if arg == "--json" {
            json = true;
        } else {
            paths.push(PathBuf::from(arg));
        }
    }
    let cases_dir = paths.first().cloned().unwrap_or(root.join("config/cases"));
    let scenario = paths
        .get(1)
        .cloned()
        .unwrap_or(root.join("config/scenarios/approach-kralingen.jsonl"));

    let inputs: Vec<Input> = std::fs::read_to_string(&scenario)
        .map_err(|e| format!("{}: {e}", scenario.display()))?
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", scenario.display(), n + 1))
        })
        .collect::<Result<_, _>>()?;
    let start = match inputs.first() {
        Some(Input::Fix(f)) => f.ts,
        Some(Input::Status(s)) => s.ts,
        Some(Input::Tick { now }) => *now,
        None => return Err(format!("{}: no inputs", scenario.display()).into()),
    };

    let mut engine = Engine::new(EngineConfig::default());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cases_dir)
        .map_err(|e| format!("{}: {e}", cases_dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for file in &files {
        let text = std::fs::read_to_string(file)?;
        let case = Case::from_json(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        for warning in validate_case(&case).warnings {
            eprintln!("warning: {}: {warning}", file.display());
        }
        let id = case.id.clone();
        engine
            .upsert_case(case, start)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        eprintln!("loaded case {id} from {}", file.display());
    }
    eprintln!(
        "feeding {} inputs from {}\n",
        inputs.len(),
        scenario.display()
    );

    let mut count = 0;
    for input in &inputs {
        match engine.apply(input) {
            Ok(events) => {
                for event in events {
                    count += 1;
                    if json {
                        println!("{}", serde_json::to_string(&event)?);
                    } else {
                        println!("{}", describe(&event));
                    }
                }
            }
            Err(refused) => eprintln!("refused: {refused}"),
        }
    }
    eprintln!("\n{count} events from {} cases", engine.case_count());
    Ok(())
}

fn describe(e: &Event) -> String {
    let local =
        e.at.to_zoned_datetime(kordon_core::schedule::schedule_time_zone())
            .strftime("%H:%M:%S")
            .to_string();
    let mut line = format!(
        "{local}  {:<11} {:<18} {:<8} {}/{}",
        format!("{:?}", e.phase).to_lowercase(),
        e.kind.as_str(),
        format!("{:?}", e.severity).to_lowercase(),
        e.case,
        e.order
            .as_ref()
            .map_or_else(|| e.device.to_string(), |o| o.to_string()),
    );
    if let Some(c) = e.certainty {
        line += &format!("  {:?}", c).to_lowercase();
    }
    if let Some(d) = e.distance_m {
        line += &format!("  {d:.0} m");
    }
    line += &format!("  [{}]", &e.id.to_string()[..8]);
    line
}
