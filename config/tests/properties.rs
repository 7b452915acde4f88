//! Properties of duration parsing that hold for every input of a shape, where a
//! fuzzer would be overkill (the fuzz targets in `fuzz/` cover arbitrary bytes):
//! durations read back what they print, a number needs a unit, and no number with a
//! unit panics. The URL password properties are in `probes/tests/properties.rs`,
//! beside the kinds that own the URLs.

use std::time::Duration;

use depprobe_config::ConfigDuration;
use depprobe_config::duration::{MAX_DURATION, parse_duration};
use proptest::prelude::*;

proptest! {
    // No regression files in the tree: a failure prints its minimal input.
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_duration_reads_back_what_it_prints(ms in 0u64..7 * 86_400_000) {
        let d = Duration::from_millis(ms);
        let printed = ConfigDuration(d).to_string();
        prop_assert_eq!(parse_duration(&printed), Ok(d), "printed as {}", printed);
    }

    #[test]
    fn a_number_with_a_unit_is_that_many_units_up_to_the_bound(n in 0u64..100_000, unit in 0usize..5) {
        let (suffix, unit_ms) = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)][unit];
        let text = format!("{n}{suffix}");
        let d = Duration::from_millis(n * unit_ms);
        if d <= MAX_DURATION {
            prop_assert_eq!(parse_duration(&text), Ok(d));
        } else {
            let e = parse_duration(&text).expect_err("past the bound");
            prop_assert!(e.contains("longest duration allowed"), "{}", e);
        }
    }

    #[test]
    fn a_number_without_a_unit_is_an_error_that_says_so(n in any::<u64>()) {
        let e = parse_duration(&n.to_string()).expect_err("a bare number");
        prop_assert!(e.contains("no unit"), "{}", e);
    }

    #[test]
    fn any_number_with_a_unit_gives_an_answer(n in any::<u64>(), unit in "(ms|s|m|h|d|w|y)") {
        // Overflowing products (18446744073709551615w) are errors, not panics.
        let _ = parse_duration(&format!("{n}{unit}"));
    }
}
