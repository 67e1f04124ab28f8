// `rho launch k8s`: a Kubernetes Indexed Job whose pods are the ranks of one `rho score` configuration.
// Pod i gets JOB_COMPLETION_INDEX=i from Kubernetes and RHO_WORLD_SIZE=completions from this manifest
// (Kubernetes does not tell a pod the Job's size), which is all rank.ts needs.
import { ConfigError } from '../../schemas/errors.js';
import { checkScoreArgs } from './slurm.js';

export interface K8sLaunch {
  name: string;
  image: string;
  /** Pods in total = the world size. */
  tasks: number;
  /** Pods at once (default: all). */
  parallelism?: number;
  /** Retries per index before that index counts as failed (Kubernetes >= 1.29; needs restartPolicy Never). */
  backoffLimitPerIndex: number;
  gpusPerTask?: number;
  /** Extended resource name of a GPU. */
  gpuResource: string;
  cpusPerTask?: number;
  /** Kubernetes quantity, e.g. 32Gi. */
  mem?: string;
  namespace?: string;
  /** A Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_REGION...) for s3:// inputs and outputs. */
  envSecret?: string;
  serviceAccount?: string;
  /** The command that runs rho inside the image. */
  rhoCommand: string[];
  scoreArgs: string[];
}

export function k8sManifest(o: K8sLaunch): Record<string, unknown> {
  if (!Number.isInteger(o.tasks) || o.tasks < 1) throw new ConfigError(`--tasks must be a positive integer (got ${o.tasks})`);
  if (!o.image) throw new ConfigError('--image is required: the container image with rho installed');
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(o.name) || o.name.length > 52) {
    throw new ConfigError(`--job-name ${o.name}: a Kubernetes Job name is lower-case letters, digits and '-', at most 52 characters (pods append an index)`);
  }
  checkScoreArgs(o.scoreArgs);
  const limits: Record<string, string> = {};
  const requests: Record<string, string> = {};
  if (o.gpusPerTask) limits[o.gpuResource] = String(o.gpusPerTask);
  if (o.cpusPerTask) requests.cpu = limits.cpu = String(o.cpusPerTask);
  if (o.mem) requests.memory = limits.memory = o.mem;
  const container: Record<string, unknown> = {
    name: 'rho',
    image: o.image,
    command: [...o.rhoCommand, 'score', '--world-size', String(o.tasks), ...o.scoreArgs],
    env: [{ name: 'RHO_WORLD_SIZE', value: String(o.tasks) }],
    ...(o.envSecret ? { envFrom: [{ secretRef: { name: o.envSecret } }] } : {}),
    resources: { ...(Object.keys(limits).length ? { limits } : {}), ...(Object.keys(requests).length ? { requests } : {}) },
  };
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: o.name, ...(o.namespace ? { namespace: o.namespace } : {}), labels: { 'app.kubernetes.io/name': 'rho', 'app.kubernetes.io/component': 'score' } },
    spec: {
      completionMode: 'Indexed',
      completions: o.tasks,
      parallelism: o.parallelism ?? o.tasks,
      // A failing index is retried on its own; the others keep going. Re-applying the Job (after deleting the
      // old one) finishes exactly the missing units: finished ones have completion records.
      backoffLimitPerIndex: o.backoffLimitPerIndex,
      template: {
        metadata: { labels: { 'app.kubernetes.io/name': 'rho' } },
        spec: {
          restartPolicy: 'Never',
          ...(o.serviceAccount ? { serviceAccountName: o.serviceAccount } : {}),
          containers: [container],
        },
      },
    },
  };
}

/** YAML for the manifest: block style, every string double-quoted (JSON string syntax is valid YAML). */
export function toYaml(v: unknown, indent = 0): string {
  const pad = ' '.repeat(indent);
  const scalar = (x: unknown) => (typeof x === 'string' ? JSON.stringify(x) : String(x));
  const isScalar = (x: unknown) => x === null || typeof x !== 'object';
  if (Array.isArray(v)) {
    if (v.length === 0) return `${pad}[]\n`;
    return v.map((item) => {
      if (isScalar(item)) return `${pad}- ${scalar(item)}\n`;
      const body = toYaml(item, indent + 2);
      return `${pad}- ${body.slice(indent + 2)}`;
    }).join('');
  }
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>);
    if (entries.length === 0) return `${pad}{}\n`;
    return entries.map(([k, x]) => {
      const key = /^[A-Za-z0-9_./-]+$/.test(k) ? k : JSON.stringify(k);
      if (isScalar(x)) return `${pad}${key}: ${scalar(x)}\n`;
      if (Array.isArray(x) && x.length === 0) return `${pad}${key}: []\n`;
      if (!Array.isArray(x) && Object.keys(x as object).length === 0) return `${pad}${key}: {}\n`;
      return `${pad}${key}:\n${toYaml(x, indent + 2)}`;
    }).join('');
  }
  return `${pad}${scalar(v)}\n`;
}
