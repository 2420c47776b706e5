// Validate Kubernetes objects (a JSON array on stdin) of the Prometheus Operator's,
// cert-manager's and KEDA's kinds against the validators generated from their published CRD
// schemas; print one line per error, exit 1 if there is any.
import { readFileSync } from "node:fs";
import * as certManager from "@kubernetes-models/cert-manager/cert-manager.io/v1";
import * as keda from "@kubernetes-models/keda/keda.sh/v1alpha1";
import * as monitoring from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const kinds = {
  "cert-manager.io/v1": certManager,
  "keda.sh/v1alpha1": keda,
  "monitoring.coreos.com/v1": monitoring,
};
const docs = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const doc of docs) {
  const group = kinds[doc.apiVersion];
  const Model = group && group[doc.kind];
  const name = `${doc.kind}/${doc.metadata?.name}`;
  if (!Model) {
    console.log(`${name}: no schema for ${doc.apiVersion} ${doc.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`${name}: valid`);
  } catch (err) {
    console.log(`${name}: ${err.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
