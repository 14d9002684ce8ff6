//! Workload settings (annotations and image labels) from arbitrary keys and values.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use wasmbox_runtime::WorkloadSettings;

fuzz_target!(|input: (Vec<(String, String)>, Vec<(String, String)>)| {
    let (labels, annotations) = input;
    let labels: HashMap<String, String> = labels.into_iter().map(|(k, v)| (format!("wasmbox.io/{k}"), v)).collect();
    let annotations: HashMap<String, String> = annotations.into_iter().map(|(k, v)| (format!("wasmbox.io/{k}"), v)).collect();
    if let Err(err) = WorkloadSettings::from_labels_and_annotations(&labels, &annotations) {
        assert!(!format!("{err:#}").contains('\n'));
    }
});
