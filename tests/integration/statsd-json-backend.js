/* A StatsD backend for the tests: at every flush, one line on stdout,
 * "PBXGUARD_FLUSH {json}", with the counters and gauges StatsD computed. */
'use strict';

exports.init = function (startupTime, config, events) {
  events.on('flush', function (timestamp, metrics) {
    process.stdout.write('PBXGUARD_FLUSH ' + JSON.stringify({
      timestamp: timestamp,
      counters: metrics.counters,
      gauges: metrics.gauges,
    }) + '\n');
  });
  return true;
};
