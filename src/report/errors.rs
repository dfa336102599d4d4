//! errors.csv: one row per failed unit, in run order, with Mambu's answer.

use crate::checkpoint::FailedUnit;

pub const HEADER: [&str; 8] = [
    "unit",
    "step",
    "http_status",
    "error_code",
    "error_reason",
    "error_source",
    "message",
    "attempts",
];

/// errors.csv's bytes.
pub fn render(failed: &[FailedUnit]) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(HEADER)?;
    for unit in failed {
        let e = &unit.error;
        let text = |v: Option<String>| v.unwrap_or_default();
        w.write_record([
            unit.key.clone(),
            e.step.clone(),
            text(e.http_status.map(|s| s.to_string())),
            text(e.error_code.map(|c| c.to_string())),
            text(e.error_reason.clone()),
            text(e.error_source.clone()),
            e.message.clone(),
            e.attempts.to_string(),
        ])?;
    }
    w.into_inner()
        .map_err(|e| anyhow::anyhow!("writing errors.csv: {}", e.error()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::UnitError;

    #[test]
    fn quotes_what_needs_it() {
        let failed = vec![FailedUnit {
            key: "CL-7".into(),
            error: UnitError {
                step: "loan".into(),
                http_status: Some(400),
                error_code: Some(4),
                error_reason: Some("INVALID_PARAMETERS".into()),
                error_source: None,
                message: "amount, \"loanAmount\"\nout of range".into(),
                attempts: 2,
            },
        }];
        let text = String::from_utf8(render(&failed).unwrap()).unwrap();
        assert_eq!(
            text,
            "unit,step,http_status,error_code,error_reason,error_source,message,attempts\nCL-7,loan,400,4,INVALID_PARAMETERS,,\"amount, \"\"loanAmount\"\"\nout of range\",2\n"
        );
        assert_eq!(
            String::from_utf8(render(&[]).unwrap())
                .unwrap()
                .lines()
                .count(),
            1,
            "the header alone when nothing failed"
        );
    }
}
