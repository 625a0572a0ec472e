using System.Buffers;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace MedServe.Protocol;

/// <summary>How the caller wants outputs back: which ones, and which as binary data.</summary>
public sealed record V2OutputOptions(bool AllBinary, IReadOnlySet<string> BinaryOutputs)
{
    public bool IsBinary(string output) => AllBinary || BinaryOutputs.Contains(output);

    public bool AnyBinary => AllBinary || BinaryOutputs.Count > 0;
}

/// <summary>
/// The Open Inference Protocol (KServe V2, as Triton speaks it) on the wire: JSON tensors, flat or
/// nested, and the binary tensor data extension. Knows nothing of HTTP: the front end hands it bytes.
/// Errors name fields and shapes, never tensor values.
/// </summary>
public static class V2Codec
{
    private static readonly JsonDocumentOptions DocumentOptions = new() { MaxDepth = 64 };

    /// <summary>
    /// Parses an infer request. <paramref name="jsonLength"/> is the value of the
    /// <c>Inference-Header-Content-Length</c> header (the JSON part's length), or null when the body is all JSON.
    /// More than <paramref name="maxElements"/> tensor elements, all inputs together, is refused (413) before any
    /// tensor is allocated.
    /// </summary>
    public static (InferenceRequest Request, V2OutputOptions Outputs) ParseRequest(ReadOnlyMemory<byte> body, int? jsonLength, long maxElements = long.MaxValue)
    {
        if (jsonLength is { } n && (n < 0 || n > body.Length))
        {
            throw MedServeException.Invalid($"Inference-Header-Content-Length is {n} but the body has only {body.Length} bytes", "Inference-Header-Content-Length");
        }
        var json = jsonLength is { } len ? body[..len] : body;
        var binary = jsonLength is { } l ? body[l..] : ReadOnlyMemory<byte>.Empty;
        // JSON is UTF-8: System.Text.Json parses invalid sequences inside strings and only fails (with an
        // InvalidOperationException) when one is read. Refuse them here, naming where, never the bytes.
        JsonText.RequireUtf8(json.Span, "request body");

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, DocumentOptions);
        }
        catch (JsonException e)
        {
            throw MedServeException.Invalid($"request body is not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1})");
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw MedServeException.Invalid("request body must be a JSON object");
            }

            string? id = null;
            if (root.TryGetProperty("id", out var idElement))
            {
                id = idElement.ValueKind == JsonValueKind.String
                    ? idElement.GetString()
                    : throw MedServeException.Invalid("'id' must be a string", "id");
            }

            var allBinary = false;
            long timeoutMicroseconds = 0;
            var priority = RequestPriority.Online;
            if (root.TryGetProperty("parameters", out var parameters) && parameters.ValueKind != JsonValueKind.Null)
            {
                if (parameters.ValueKind != JsonValueKind.Object)
                {
                    throw MedServeException.Invalid("'parameters' must be an object", "parameters");
                }
                if (parameters.TryGetProperty("binary_data_output", out var bdo))
                {
                    allBinary = bdo.ValueKind == JsonValueKind.True;
                }
                if (parameters.TryGetProperty("timeout", out var timeout))
                {
                    // Triton and KServe: microseconds the request may wait before it runs.
                    timeoutMicroseconds = timeout.ValueKind == JsonValueKind.Number && timeout.TryGetInt64(out var us) && us is > 0 and <= BatchingPolicy.MaxTimeoutMicroseconds
                        ? us
                        : throw MedServeException.Invalid("parameters.timeout must be a whole number of microseconds from 1 to 3600000000 (one hour)", "parameters.timeout");
                }
                if (parameters.TryGetProperty("priority", out var p))
                {
                    // 'online' (default) or 'batch': a caller may put its own bulk work behind interactive requests.
                    priority = p.ValueKind == JsonValueKind.String && p.GetString() is "online" or "batch"
                        ? (p.GetString() == "batch" ? RequestPriority.Job : RequestPriority.Online)
                        : throw MedServeException.Invalid("parameters.priority must be \"online\" or \"batch\"", "parameters.priority");
                }
            }

            if (!root.TryGetProperty("inputs", out var inputsElement) || inputsElement.ValueKind != JsonValueKind.Array)
            {
                throw MedServeException.Invalid("'inputs' must be an array of tensors", "inputs");
            }
            var count = inputsElement.GetArrayLength();
            if (count == 0)
            {
                throw MedServeException.Invalid("'inputs' is empty", "inputs");
            }

            var inputs = new Tensor[count];
            var binaryOffset = 0;
            var index = 0;
            long elements = 0;
            foreach (var input in inputsElement.EnumerateArray())
            {
                inputs[index] = ParseInput(input, index, json.Length, binary.Span, ref binaryOffset, ref elements, maxElements);
                index++;
            }
            if (binaryOffset != binary.Length)
            {
                throw MedServeException.Invalid($"the body carries {binary.Length} bytes of binary data but the inputs' binary_data_size add up to {binaryOffset}", "binary_data_size");
            }

            string[]? requested = null;
            var binaryOutputs = new HashSet<string>(StringComparer.Ordinal);
            if (root.TryGetProperty("outputs", out var outputsElement))
            {
                if (outputsElement.ValueKind != JsonValueKind.Array)
                {
                    throw MedServeException.Invalid("'outputs' must be an array", "outputs");
                }
                var names = new List<string>();
                foreach (var output in outputsElement.EnumerateArray())
                {
                    var name = output.ValueKind == JsonValueKind.Object && output.TryGetProperty("name", out var n2) && n2.ValueKind == JsonValueKind.String
                        ? n2.GetString()!
                        : throw MedServeException.Invalid($"outputs[{names.Count}] needs a 'name'", "outputs");
                    names.Add(name);
                    if (output.TryGetProperty("parameters", out var op) && op.ValueKind == JsonValueKind.Object
                        && op.TryGetProperty("binary_data", out var bd) && bd.ValueKind == JsonValueKind.True)
                    {
                        binaryOutputs.Add(name);
                    }
                }
                requested = names.Count > 0 ? [.. names] : null;
            }

            return (new InferenceRequest(inputs, requested, id) { TimeoutMicroseconds = timeoutMicroseconds, Priority = priority },
                new V2OutputOptions(allBinary, binaryOutputs));
        }
    }

    private static Tensor ParseInput(JsonElement input, int index, int jsonBytes, ReadOnlySpan<byte> binary, ref int binaryOffset, ref long totalElements, long maxElements)
    {
        if (input.ValueKind != JsonValueKind.Object)
        {
            throw MedServeException.Invalid($"inputs[{index}] must be an object", "inputs");
        }
        var name = input.TryGetProperty("name", out var nameElement) && nameElement.ValueKind == JsonValueKind.String
            ? nameElement.GetString()!
            : throw MedServeException.Invalid($"inputs[{index}] needs a string 'name'", $"inputs[{index}].name");
        // The caller chose the name: it may carry anything, patient data included. Messages name the position instead.
        var field = $"inputs[{index}]";

        if (!input.TryGetProperty("datatype", out var dtElement) || !TensorTypes.TryParse(dtElement.ValueKind == JsonValueKind.String ? dtElement.GetString() : null, out var datatype))
        {
            throw MedServeException.Invalid($"{field}: 'datatype' must be one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64", field);
        }
        if (datatype == TensorDatatype.BYTES)
        {
            throw MedServeException.Invalid($"{field}: datatype BYTES is not supported by this server", field);
        }

        if (!input.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
        {
            throw MedServeException.Invalid($"{field}: 'shape' must be an array of dimensions", field);
        }
        var shape = new long[shapeElement.GetArrayLength()];
        long elements = 1;
        var d = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out var value) || value < 1)
            {
                throw MedServeException.Invalid($"{field}: shape dimension {d} must be a positive integer", field);
            }
            shape[d++] = value;
            elements = value > long.MaxValue / elements ? long.MaxValue : elements * value;
        }
        if (elements > maxElements - totalElements)
        {
            throw new MedServeException(ErrorKind.TooLarge, totalElements == 0
                ? $"{field}: shape {ShapeText(shape)} has {ElementText(elements)} elements; the limit is {maxElements} per request (MedServe:Limits:MaxTensorElements)"
                : $"{field}: shape {ShapeText(shape)} has {ElementText(elements)} elements, {ElementText(totalElements)} already in earlier inputs; the limit is {maxElements} per request (MedServe:Limits:MaxTensorElements)", field);
        }
        if (elements > int.MaxValue / 8)
        {
            throw new MedServeException(ErrorKind.TooLarge, $"{field}: shape {ShapeText(shape)} is too large for one tensor", field);
        }
        totalElements += elements;

        var elementSize = datatype.ElementSize();
        var byteLength = checked((int)elements * elementSize);

        if (input.TryGetProperty("parameters", out var parameters) && parameters.ValueKind == JsonValueKind.Object
            && parameters.TryGetProperty("binary_data_size", out var sizeElement))
        {
            if (sizeElement.ValueKind != JsonValueKind.Number || !sizeElement.TryGetInt64(out var size) || size < 0)
            {
                throw MedServeException.Invalid($"{field}: binary_data_size must be a non-negative integer", field);
            }
            if (size != byteLength)
            {
                throw MedServeException.Invalid($"{field}: binary_data_size is {size} bytes but shape {ShapeText(shape)} of {datatype} needs {byteLength}", field);
            }
            if (binaryOffset + size > binary.Length)
            {
                throw MedServeException.Invalid($"{field}: binary data is truncated: {size} bytes expected at offset {binaryOffset}, {Math.Max(0, binary.Length - binaryOffset)} present", field);
            }
            var bytes = binary.Slice(binaryOffset, (int)size).ToArray();
            binaryOffset += (int)size;
            return new Tensor(name, datatype, shape, bytes);
        }

        if (!input.TryGetProperty("data", out var data))
        {
            throw MedServeException.Invalid($"{field}: needs 'data' (or parameters.binary_data_size with a binary body)", field);
        }
        if (elements > jsonBytes / 2 + 1)
        {
            // Every JSON element takes at least two bytes: refuse before allocating for a shape the body cannot fill.
            throw MedServeException.Invalid($"{field}: shape {ShapeText(shape)} needs {elements} elements but the body is only {jsonBytes} bytes", field);
        }
        var buffer = new byte[byteLength];
        var written = 0;
        Fill(data, datatype, buffer, ref written, (int)elements, field);
        if (written != elements)
        {
            throw MedServeException.Invalid($"{field}: data has {written} elements but shape {ShapeText(shape)} needs {elements}", field);
        }
        return new Tensor(name, datatype, shape, buffer);
    }

    private static void Fill(JsonElement element, TensorDatatype datatype, byte[] buffer, ref int written, int capacity, string field)
    {
        if (element.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in element.EnumerateArray())
            {
                Fill(item, datatype, buffer, ref written, capacity, field);
            }
            return;
        }
        if (written >= capacity)
        {
            // Count the rest for an honest message, without storing it.
            throw MedServeException.Invalid($"{field}: data has more elements than its shape allows ({capacity})", field);
        }
        if (!TryWrite(element, datatype, buffer, written))
        {
            throw MedServeException.Invalid($"{field}: element {written} is not a valid {datatype} value", field);
        }
        written++;
    }

    private static bool TryWrite(JsonElement e, TensorDatatype datatype, byte[] buffer, int i)
    {
        var span = buffer.AsSpan();
        switch (datatype)
        {
            case TensorDatatype.BOOL:
                if (e.ValueKind is JsonValueKind.True or JsonValueKind.False)
                {
                    span[i] = e.ValueKind == JsonValueKind.True ? (byte)1 : (byte)0;
                    return true;
                }
                return false;
            case TensorDatatype.FP32:
                if (TryGetFloating(e, out var f32))
                {
                    var v = (float)f32;
                    if (float.IsInfinity(v) && !double.IsInfinity(f32))
                    {
                        return false; // out of FP32 range
                    }
                    MemoryMarshal.Cast<byte, float>(span)[i] = v;
                    return true;
                }
                return false;
            case TensorDatatype.FP64:
                if (TryGetFloating(e, out var f64))
                {
                    MemoryMarshal.Cast<byte, double>(span)[i] = f64;
                    return true;
                }
                return false;
            case TensorDatatype.FP16:
                if (TryGetFloating(e, out var f16))
                {
                    MemoryMarshal.Cast<byte, Half>(span)[i] = (Half)f16;
                    return true;
                }
                return false;
        }
        if (e.ValueKind != JsonValueKind.Number)
        {
            return false;
        }
        switch (datatype)
        {
            case TensorDatatype.UINT8 when e.TryGetByte(out var u8): span[i] = u8; return true;
            case TensorDatatype.INT8 when e.TryGetSByte(out var i8): span[i] = unchecked((byte)i8); return true;
            case TensorDatatype.UINT16 when e.TryGetUInt16(out var u16): MemoryMarshal.Cast<byte, ushort>(span)[i] = u16; return true;
            case TensorDatatype.INT16 when e.TryGetInt16(out var i16): MemoryMarshal.Cast<byte, short>(span)[i] = i16; return true;
            case TensorDatatype.UINT32 when e.TryGetUInt32(out var u32): MemoryMarshal.Cast<byte, uint>(span)[i] = u32; return true;
            case TensorDatatype.INT32 when e.TryGetInt32(out var i32): MemoryMarshal.Cast<byte, int>(span)[i] = i32; return true;
            case TensorDatatype.UINT64 when e.TryGetUInt64(out var u64): MemoryMarshal.Cast<byte, ulong>(span)[i] = u64; return true;
            case TensorDatatype.INT64 when e.TryGetInt64(out var i64): MemoryMarshal.Cast<byte, long>(span)[i] = i64; return true;
            default: return false;
        }
    }

    /// <summary>JSON has no NaN or infinity: the strings "NaN", "Infinity" and "-Infinity" stand for them.</summary>
    private static bool TryGetFloating(JsonElement e, out double value)
    {
        if (e.ValueKind == JsonValueKind.Number)
        {
            return e.TryGetDouble(out value);
        }
        if (e.ValueKind == JsonValueKind.String)
        {
            switch (e.GetString())
            {
                case "NaN": value = double.NaN; return true;
                case "Infinity" or "inf": value = double.PositiveInfinity; return true;
                case "-Infinity" or "-inf": value = double.NegativeInfinity; return true;
            }
        }
        value = 0;
        return false;
    }

    /// <summary>
    /// Writes an infer response: JSON, followed by the binary data of the outputs asked for as binary.
    /// Returns the JSON part's length when binary data follows (for <c>Inference-Header-Content-Length</c>), else null.
    /// </summary>
    public static int? WriteResponse(InferenceResponse response, V2OutputOptions options, IBufferWriter<byte> destination)
    {
        int jsonLength;
        using (var writer = new Utf8JsonWriter(destination, new JsonWriterOptions { SkipValidation = true }))
        {
            writer.WriteStartObject();
            writer.WriteString("model_name"u8, response.ModelName);
            writer.WriteString("model_version"u8, response.ModelVersion);
            if (response.Id is not null)
            {
                writer.WriteString("id"u8, response.Id);
            }
            writer.WriteStartArray("outputs"u8);
            foreach (var output in response.Outputs)
            {
                writer.WriteStartObject();
                writer.WriteString("name"u8, output.Name);
                writer.WriteString("datatype"u8, output.Datatype.ToString());
                writer.WriteStartArray("shape"u8);
                foreach (var dim in output.Shape)
                {
                    writer.WriteNumberValue(dim);
                }
                writer.WriteEndArray();
                if (options.IsBinary(output.Name))
                {
                    writer.WriteStartObject("parameters"u8);
                    writer.WriteNumber("binary_data_size"u8, output.Data.Length);
                    writer.WriteEndObject();
                }
                else
                {
                    writer.WriteStartArray("data"u8);
                    WriteData(writer, output);
                    writer.WriteEndArray();
                }
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
            // Server-side timing of this request (Triton reports the same as statistics): milliseconds in the
            // replica's queue and in ONNX Runtime, the rows of the batch it ran in, and which replica ran it.
            writer.WriteStartObject("parameters"u8);
            writer.WriteNumber("queue_ms"u8, Math.Round(response.QueueMilliseconds, 4));
            writer.WriteNumber("compute_ms"u8, Math.Round(response.ComputeMilliseconds, 4));
            writer.WriteNumber("batch_size"u8, response.BatchSize);
            if (response.Replica is { } replica)
            {
                writer.WriteString("replica"u8, replica);
            }
            writer.WriteEndObject();
            writer.WriteEndObject();
            writer.Flush();
            jsonLength = (int)writer.BytesCommitted;
        }

        if (!options.AnyBinary)
        {
            return null;
        }
        foreach (var output in response.Outputs)
        {
            if (options.IsBinary(output.Name))
            {
                destination.Write(output.Data);
            }
        }
        return jsonLength;
    }

    /// <summary>Writes a tensor's elements as a flat JSON array's items (NaN and infinities as strings).</summary>
    public static void WriteData(Utf8JsonWriter writer, Tensor t)
    {
        var span = t.Data.AsSpan();
        switch (t.Datatype)
        {
            case TensorDatatype.FP32:
                foreach (var v in MemoryMarshal.Cast<byte, float>(span))
                {
                    if (float.IsFinite(v)) { writer.WriteNumberValue(v); } else { writer.WriteStringValue(NonFinite(v)); }
                }
                break;
            case TensorDatatype.FP64:
                foreach (var v in MemoryMarshal.Cast<byte, double>(span))
                {
                    if (double.IsFinite(v)) { writer.WriteNumberValue(v); } else { writer.WriteStringValue(NonFinite(v)); }
                }
                break;
            case TensorDatatype.BOOL:
                foreach (var b in span) { writer.WriteBooleanValue(b != 0); }
                break;
            case TensorDatatype.INT64:
                foreach (var v in MemoryMarshal.Cast<byte, long>(span)) { writer.WriteNumberValue(v); }
                break;
            case TensorDatatype.UINT64:
                foreach (var v in MemoryMarshal.Cast<byte, ulong>(span)) { writer.WriteNumberValue(v); }
                break;
            case TensorDatatype.INT32:
                foreach (var v in MemoryMarshal.Cast<byte, int>(span)) { writer.WriteNumberValue(v); }
                break;
            default:
                for (long i = 0; i < t.ElementCount; i++)
                {
                    var v = t.GetDouble(i);
                    if (double.IsFinite(v)) { writer.WriteNumberValue(v); } else { writer.WriteStringValue(NonFinite(v)); }
                }
                break;
        }
    }

    private static string NonFinite(double v) => double.IsNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";

    private static string ElementText(long elements) => elements == long.MaxValue ? "more than 9.2e18" : elements.ToString(CultureInfo.InvariantCulture);

    private static string ShapeText(long[] shape) => "[" + string.Join(",", shape.Select(d => d.ToString(CultureInfo.InvariantCulture))) + "]";
}
