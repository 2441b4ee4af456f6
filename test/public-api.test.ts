// The public API (lib/index.ts): every type used in a public signature is exported (this file fails to compile
// otherwise — ts-jest type-checks it), and the runtime exports of each layer are present.
import * as rift from '../lib';
import type {
  Device,
  Precision,
  StepMetrics,
  TrainMethod,
  RolloutOptions,
  EvaluateOptions,
  TrainerOptions,
  ModelOptions,
  LossOptions,
  PredictOptions,
  MemoryPrediction,
  RolloutRecord,
  PromptSpec,
  GenerateOptions,
  ReadJsonlOptions,
  LockInfo,
} from '../lib';

test('public types are exported and usable', () => {
  const device: Device = 'cuda';
  const precision: Precision = 'bf16';
  const method: TrainMethod = 'rft';
  const metrics: Pick<StepMetrics, 'step'> = { step: 1 };
  type Uses = [
    RolloutOptions<{ id: string }>,
    EvaluateOptions<{ id: string }>,
    TrainerOptions,
    ModelOptions,
    LossOptions,
    PredictOptions,
    MemoryPrediction,
    RolloutRecord,
    PromptSpec,
    GenerateOptions,
    ReadJsonlOptions<unknown>,
    LockInfo,
  ];
  const n: Uses['length'] = 12;
  expect([device, precision, method, metrics.step, n]).toEqual(['cuda', 'bf16', 'rft', 1, 12]);
});

test('one source of truth per vocabulary: the enum lists are exported', () => {
  expect(rift.DEVICES).toEqual(['cpu', 'cuda']);
  expect(rift.PRECISIONS).toEqual(['fp32', 'bf16']);
  expect(rift.DEVICE_DTYPES).toEqual(['fp32', 'bf16']);
  expect(rift.TRAIN_METHODS).toContain('rft');
  const dtype: rift.DeviceDtype = 'bf16';
  expect(rift.DEVICE_DTYPES).toContain(dtype);
});

test('each layer exports its entry points', () => {
  for (const name of [
    'lossAndGrad',
    'DeviceTensor',
    'Model',
    'Tokenizer',
    'generate',
    'Trainer',
    'packSamples',
    'readJsonl',
    'acquireLock',
    'verify',
    'runRollouts',
    'evaluate',
    'predictMemory',
    'writeReport',
    'PromptFormat',
    'startServer',
    'runRemoteRollouts',
    'checkDpoBeta',
  ] as const) {
    expect([name, typeof (rift as Record<string, unknown>)[name]]).toEqual([name, 'function']);
  }
});
