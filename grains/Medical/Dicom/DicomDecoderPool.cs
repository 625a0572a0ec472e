using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace MedServe.Medical.Dicom;

/// <summary>Settings of DICOM decoding, section <c>MedServe:Dicom</c>.</summary>
public sealed class DicomOptions
{
    public const string Section = "MedServe:Dicom";

    /// <summary>Decoder worker processes at most (each decodes one file at a time); 0 means the number of cores, at most 4.</summary>
    public int DecoderWorkers { get; set; }

    /// <summary>Seconds one file may take to decode before its worker is killed and the request refused.</summary>
    public double DecodeTimeoutSeconds { get; set; } = 30;

    public int EffectiveWorkers => DecoderWorkers > 0 ? DecoderWorkers : Math.Clamp(Environment.ProcessorCount, 1, 4);
}

/// <summary>How to start a decoder worker: a program and its arguments (the last one <see cref="DicomDecoderWorker.Switch"/>).</summary>
public sealed record DicomWorkerCommand(string FileName, IReadOnlyList<string> Arguments)
{
    /// <summary>
    /// Runs <paramref name="assemblyPath"/> (a program whose entry point honours <see cref="DicomDecoderWorker.Switch"/>)
    /// with the dotnet host that runs this process: <c>dotnet exec program.dll --dicom-decoder-worker</c>.
    /// </summary>
    public static DicomWorkerCommand ForAssembly(string assemblyPath) =>
        string.IsNullOrEmpty(assemblyPath) && Environment.ProcessPath is { } program
            ? new(program, [DicomDecoderWorker.Switch]) // a single-file program has no assembly path: run the program itself
            : new(DotnetHost(), ["exec", assemblyPath, DicomDecoderWorker.Switch]);

    private static string DotnetHost()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host))
        {
            return host;
        }
        // <root>/shared/Microsoft.NETCore.App/<version>/ -> <root>/dotnet
        var root = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", ".."));
        var candidate = Path.Combine(root, OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet");
        return File.Exists(candidate) ? candidate : "dotnet";
    }
}

/// <summary>
/// Runs GDCM in worker processes (<see cref="DicomDecoderWorker"/>): decoding pixel data (<see cref="DecodeAsync"/>) and
/// de-identifying files (<see cref="DeidentifyAsync"/>), so that GDCM, native code that aborts on some malformed input
/// (and on some of its own writes), can never take the server down: a worker that crashes, breaks the protocol or runs past
/// the time limit is killed and replaced, and its request gets a 400. Workers start on first use and are kept for the
/// next request; at most <see cref="DicomOptions.EffectiveWorkers"/> decode at once (others wait their turn).
/// Workers get no environment beyond what the runtime needs (no keys).
/// </summary>
public sealed partial class DicomDecoderPool : IAsyncDisposable
{
    private static readonly string[] KeptEnvironment = ["PATH", "DOTNET_ROOT", "LD_LIBRARY_PATH", "TMPDIR", "HOME", "LANG"];

    private readonly ILogger _logger;
    private readonly DicomWorkerCommand _command;
    private readonly TimeSpan _timeout;
    private readonly SemaphoreSlim _slots;
    private readonly ConcurrentBag<Worker> _idle = [];
    private readonly ConcurrentDictionary<Worker, byte> _all = new();
    private volatile bool _disposed;

    public DicomDecoderPool(DicomWorkerCommand command, DicomOptions options, ILogger<DicomDecoderPool>? logger = null)
    {
        _logger = logger ?? (ILogger)NullLogger.Instance;
        _command = command;
        _timeout = TimeSpan.FromSeconds(options.DecodeTimeoutSeconds > 0 ? options.DecodeTimeoutSeconds : 30);
        _slots = new SemaphoreSlim(options.EffectiveWorkers, options.EffectiveWorkers);
    }

    /// <summary>Workers started and not yet gone (for tests and diagnostics).</summary>
    public int LiveWorkers => _all.Keys.Count(w => !w.HasExited);

    /// <summary>Decodes a file whose header <see cref="DicomParser"/> checked; decoder failures are 400 naming what failed.</summary>
    public async Task<DecodedPixels> DecodeAsync(ReadOnlyMemory<byte> file, DicomHeader header, CancellationToken cancellationToken)
    {
        var (pixels, failure) = await OnWorkerAsync((worker, ct) => worker.DecodeAsync(file, header.DecodedBytes, ct), cancellationToken);
        return pixels ?? throw Failed(failure, header.TransferSyntax);
    }

    /// <summary>
    /// De-identifies a Part 10 file (<see cref="DicomDeidentifier"/>) in a worker, after checking its structure here;
    /// UIDs are hashed with <paramref name="key"/> (at least 16 bytes; the same key maps a UID the same way).
    /// </summary>
    public async Task<byte[]> DeidentifyAsync(ReadOnlyMemory<byte> file, ReadOnlyMemory<byte> key, long maxInflatedBytes, CancellationToken cancellationToken)
    {
        if (key.Length is < DicomDeidentifier.MinKeyBytes or > 1024)
        {
            throw new ArgumentException($"the de-identification key needs {DicomDeidentifier.MinKeyBytes} to 1024 bytes", nameof(key));
        }
        var syntax = DicomParser.CheckStructure(file, maxInflatedBytes);
        var (result, failure) = await OnWorkerAsync((worker, ct) => worker.DeidentifyAsync(file, key, ct), cancellationToken);
        return result ?? throw failure switch
        {
            DecodeFailure.BurnedInAnnotation => MedServeException.Invalid("Burned In Annotation (0028,0301) is YES: text in the pixel data may identify the patient, so the file is not de-identified", "(0028,0301)"),
            DecodeFailure.WriteFailed => MedServeException.Invalid("the de-identified file could not be written (GDCM)", "dicom"),
            DecodeFailure.Unreadable => MedServeException.Invalid("GDCM could not read the file", "dicom"),
            _ => Failed(failure, syntax),
        };
    }

    /// <summary>Runs one request on an idle (or new) worker; a worker that crashes, breaks the protocol or times out is killed.</summary>
    private async Task<(T? Result, DecodeFailure Failure)> OnWorkerAsync<T>(Func<Worker, CancellationToken, Task<(T? Result, DecodeFailure Failure)>> work, CancellationToken cancellationToken)
        where T : class
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        await _slots.WaitAsync(cancellationToken);
        Worker? worker = null;
        try
        {
            while (_idle.TryTake(out var idle))
            {
                if (!idle.HasExited)
                {
                    worker = idle;
                    break;
                }
                Retire(idle);
            }
            worker ??= Start();
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(_timeout);
            (T? Result, DecodeFailure Failure) answer;
            try
            {
                answer = await work(worker, timeout.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or InvalidDataException or ObjectDisposedException or InvalidOperationException
                && !cancellationToken.IsCancellationRequested)
            {
                // The worker died (EOF), broke the protocol, or was killed at the time limit.
                answer = (null, timeout.IsCancellationRequested ? DecodeFailure.TimedOut : DecodeFailure.Crashed);
                WorkerLost(_logger, answer.Failure, worker.ExitCode);
            }
            if (answer.Failure is not (DecodeFailure.Crashed or DecodeFailure.TimedOut) && !_disposed)
            {
                _idle.Add(worker);
                worker = null;
            }
            return answer;
        }
        finally
        {
            if (worker is not null)
            {
                Retire(worker);
            }
            _slots.Release();
        }
    }

    private MedServeException Failed(DecodeFailure failure, TransferSyntax syntax) => failure switch
    {
        DecodeFailure.Unreadable => MedServeException.Invalid("GDCM could not read the file as an image", "(7FE0,0010)"),
        DecodeFailure.Inconsistent => MedServeException.Invalid("the decoded image does not match its header (Rows, Columns, Number of Frames, Samples per Pixel or Bits Allocated)", "(7FE0,0010)"),
        DecodeFailure.TimedOut => MedServeException.Invalid($"decoding the {syntax.Name} pixel data took longer than {_timeout.TotalSeconds:0.#} s (MedServe:Dicom:DecodeTimeoutSeconds)", "(7FE0,0010)"),
        DecodeFailure.Crashed => MedServeException.Invalid($"the {syntax.Name} pixel data could not be decoded: the decoder failed on it (corrupt or unsupported data)", "(7FE0,0010)"),
        _ => MedServeException.Invalid($"the {syntax.Name} pixel data could not be decoded (corrupt or unsupported data)", "(7FE0,0010)"),
    };

    private Worker Start()
    {
        var info = new ProcessStartInfo(_command.FileName)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            CreateNoWindow = true,
        };
        foreach (var a in _command.Arguments)
        {
            info.ArgumentList.Add(a);
        }
        // The worker needs the runtime, nothing else: no keys or settings of the server reach it.
        var keep = KeptEnvironment.Select(k => (k, Environment.GetEnvironmentVariable(k))).ToArray();
        info.Environment.Clear();
        foreach (var (k, v) in keep)
        {
            if (v is not null)
            {
                info.Environment[k] = v;
            }
        }
        info.Environment["DOTNET_gcServer"] = "0";
        info.Environment["DOTNET_TieredPGO"] = "0";
        var process = Process.Start(info) ?? throw new InvalidOperationException("the DICOM decoder worker did not start");
        // GDCM's traces are off; whatever else reaches stderr (an assertion on the way down) is dropped, never logged.
        process.ErrorDataReceived += static (_, _) => { };
        process.BeginErrorReadLine();
        var worker = new Worker(process);
        _all[worker] = 0;
        return worker;
    }

    private void Retire(Worker worker)
    {
        _all.TryRemove(worker, out _);
        worker.Kill();
    }

    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        foreach (var worker in _all.Keys)
        {
            Retire(worker);
        }
        while (_idle.TryTake(out _))
        {
        }
        await Task.CompletedTask;
    }

    [LoggerMessage(4001, LogLevel.Warning, "A DICOM decoder worker was lost ({Failure}, exit code {ExitCode}); its request got a 400 and a new worker takes the next one")]
    private static partial void WorkerLost(ILogger logger, DecodeFailure failure, int? exitCode);

    /// <summary>One worker process and its pipes.</summary>
    private sealed class Worker(Process process)
    {
        /// <summary>The exit code once the process has ended (a signal shows as 128 + its number), else null.</summary>
        public int? ExitCode
        {
            get
            {
                try
                {
                    return process.WaitForExit(200) ? process.ExitCode : null;
                }
                catch (InvalidOperationException)
                {
                    return null;
                }
            }
        }

        public bool HasExited
        {
            get
            {
                try
                {
                    return process.HasExited;
                }
                catch (InvalidOperationException)
                {
                    return true;
                }
            }
        }

        public async Task<(DecodedPixels? Pixels, DecodeFailure Failure)> DecodeAsync(ReadOnlyMemory<byte> file, long expectedBytes, CancellationToken ct)
        {
            using var kill = ct.Register(Kill);
            var output = process.StandardOutput.BaseStream;
            var failure = await ExchangeAsync(DicomDecoderWorker.Magic, expectedBytes, ReadOnlyMemory<byte>.Empty, file, ct);
            if (failure != DecodeFailure.None)
            {
                return failure is DecodeFailure.Unreadable or DecodeFailure.Inconsistent or DecodeFailure.CodecFailed
                    ? (null, failure)
                    : throw new InvalidDataException("unknown answer");
            }
            var fixedPart = new byte[10 * 4];
            await ReadAsync(output, fixedPart, ct);
            var v = new int[10];
            for (var i = 0; i < 10; i++)
            {
                v[i] = BinaryPrimitives.ReadInt32LittleEndian(fixedPart.AsSpan(i * 4));
            }
            if (v[9] is < 0 or > 64)
            {
                throw new InvalidDataException("bad answer");
            }
            var photometric = new byte[v[9]];
            await ReadAsync(output, photometric, ct);
            var lengthBytes = new byte[8];
            await ReadAsync(output, lengthBytes, ct);
            // Never trust a length from the worker beyond what the checked header declared.
            if (BinaryPrimitives.ReadInt64LittleEndian(lengthBytes) != expectedBytes)
            {
                throw new InvalidDataException("bad answer");
            }
            var buffer = GC.AllocateUninitializedArray<byte>(checked((int)expectedBytes));
            await ReadAsync(output, buffer, ct);
            return (new DecodedPixels(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], Encoding.ASCII.GetString(photometric), buffer), DecodeFailure.None);
        }

        public async Task<(byte[]? File, DecodeFailure Failure)> DeidentifyAsync(ReadOnlyMemory<byte> file, ReadOnlyMemory<byte> key, CancellationToken ct)
        {
            using var kill = ct.Register(Kill);
            var output = process.StandardOutput.BaseStream;
            var failure = await ExchangeAsync(DicomDecoderWorker.DeidentifyMagic, key.Length, key, file, ct);
            if (failure != DecodeFailure.None)
            {
                return failure is DecodeFailure.Unreadable or DecodeFailure.BurnedInAnnotation or DecodeFailure.WriteFailed
                    ? (null, failure)
                    : throw new InvalidDataException("unknown answer");
            }
            var size = new byte[8];
            await ReadAsync(output, size, ct);
            var length = BinaryPrimitives.ReadInt64LittleEndian(size);
            // The profile removes far more than it adds: never take an answer much larger than the file.
            if (length < 132 || length > file.Length + 64 * 1024)
            {
                throw new InvalidDataException("bad answer");
            }
            var result = new byte[length];
            await ReadAsync(output, result, ct);
            return (result, DecodeFailure.None);
        }

        /// <summary>
        /// Sends one request (a 16-byte header: magic, a 64-bit argument, the file's length; then the key, if any, and the
        /// file) and reads the worker's one-byte status.
        /// </summary>
        private async Task<DecodeFailure> ExchangeAsync(uint magic, long argument, ReadOnlyMemory<byte> key, ReadOnlyMemory<byte> file, CancellationToken ct)
        {
            var input = process.StandardInput.BaseStream;
            var header = new byte[16];
            BinaryPrimitives.WriteUInt32LittleEndian(header, magic);
            BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(4), argument);
            BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(12), file.Length);
            await input.WriteAsync(header, ct);
            await input.WriteAsync(key, ct);
            await input.WriteAsync(file, ct);
            await input.FlushAsync(ct);
            var status = new byte[1];
            await ReadAsync(process.StandardOutput.BaseStream, status, ct);
            return (DecodeFailure)status[0];
        }

        private static async Task ReadAsync(Stream stream, Memory<byte> buffer, CancellationToken ct)
        {
            var read = 0;
            while (read < buffer.Length)
            {
                var n = await stream.ReadAsync(buffer[read..], ct);
                if (n == 0)
                {
                    throw new EndOfStreamException();
                }
                read += n;
            }
        }

        public void Kill()
        {
            try
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                }
            }
            catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception or NotSupportedException)
            {
            }
            process.Dispose();
        }
    }
}
