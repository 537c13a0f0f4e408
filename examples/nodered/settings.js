// Node-RED settings for running lull-flow.json headless (no editor), as the
// example's test does:
//
//   npm install        # Node-RED 4 into this folder, for trying the flow only
//   node node_modules/node-red/red.js --settings settings.js --userDir /tmp/nr \
//     --port 1880 lull-flow.json
//
// In your own Node-RED, import lull-flow.json instead (Menu > Import) and set
// the broker node to your broker.
module.exports = {
  uiHost: '127.0.0.1',
  httpAdminRoot: false, // no editor
  httpNodeRoot: false,
  credentialSecret: false,
  flowFilePretty: true,
  logging: { console: { level: 'info', metrics: false, audit: false } },
  editorTheme: { projects: { enabled: false } },
  telemetry: { enabled: false },
};
