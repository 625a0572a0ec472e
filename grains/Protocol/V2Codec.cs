using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Frozen;
using System.Globalization;
using System.Runtime.ExceptionServices;
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
/// <remarks>
/// A request is read in one forward pass of a <see cref="Utf8JsonReader"/>: each input's numbers go straight into its
/// tensor's buffer, allocated at its exact size once the input's datatype and shape are known (an input whose "data"
/// comes before them is read again from where its data starts, once they are). The outcome is the same as reading the
/// whole document first and then looking fields up: invalid JSON anywhere is answered as such before any other error;
/// otherwise the first error in this order wins, wherever the fields stand in the text: 'id', 'parameters', 'inputs' (in
/// order, and within an input: name, datatype, shape, the element limit, binary data, data), 'outputs'. A field given
/// twice counts with its last value.
/// </remarks>
public static class V2Codec
{
    private static readonly JsonReaderOptions ReaderOptions = new() { MaxDepth = 64 };

    private static readonly FrozenSet<string> NoBinaryOutputs = FrozenSet<string>.Empty;

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
        // JSON is UTF-8: System.Text.Json reads invalid sequences inside strings and only fails (with an
        // InvalidOperationException) when one is decoded. Refuse them here, naming where, never the bytes.
        JsonText.RequireUtf8(json.Span, "request body");
        try
        {
            try
            {
                return Parse(json.Span, binary.Span, maxElements);
            }
            catch (Exception e) when (e is MedServeException or InvalidOperationException)
            {
                // Invalid JSON anywhere is the answer, before what the pass found so far: read the rest of the text.
                var rest = new Utf8JsonReader(json.Span, ReaderOptions);
                while (rest.Read())
                {
                }
                throw;
            }
        }
        catch (JsonException e)
        {
            throw MedServeException.Invalid($"request body is not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1})");
        }
        catch (InvalidOperationException)
        {
            // Valid UTF-8 and valid JSON, but a string whose escapes make no UTF-16 text (a lone surrogate, "\ud800"):
            // System.Text.Json throws when it is decoded. The caller's input, so a 400, never a 500.
            throw MedServeException.Invalid("request body has a string whose \\u escapes are not valid UTF-16 (a lone surrogate)");
        }
    }

    /// <summary>
    /// The forward pass over the request object. 'inputs' is read where it stands; 'id', 'parameters' and 'outputs'
    /// (small) are remembered (a reader copy at their value) and read after the object has ended, so that the errors come
    /// in the documented order and invalid JSON further on still wins.
    /// </summary>
    private static (InferenceRequest Request, V2OutputOptions Outputs) Parse(ReadOnlySpan<byte> json, ReadOnlySpan<byte> binary, long maxElements)
    {
        var reader = new Utf8JsonReader(json, ReaderOptions);
        reader.Read();
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            throw MedServeException.Invalid("request body must be a JSON object");
        }

        Utf8JsonReader id = default, parameters = default, outputs = default, lastInputs = default;
        bool hasId = false, hasParameters = false, hasOutputs = false;
        var inputsGiven = 0;
        Tensor[]? inputs = null;
        Exception? inputsError = null;
        var eager = true;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (NameIs(ref reader, "inputs"u8))
            {
                reader.Read();
                if (++inputsGiven > 1)
                {
                    // Given again: only the last counts. It is read once, after the object, not each time it comes.
                    lastInputs = reader;
                    reader.Skip();
                    continue;
                }
                var depth = reader.CurrentDepth;
                var container = reader.TokenType is JsonTokenType.StartArray or JsonTokenType.StartObject;
                try
                {
                    inputs = ReadInputs(ref reader, json.Length, binary, maxElements, ref eager);
                }
                catch (Exception e) when (e is MedServeException or InvalidOperationException)
                {
                    // Kept for its turn (an 'id' or 'parameters' error further on goes first); read on past the value.
                    inputsError = e;
                    if (container)
                    {
                        while (!(reader.TokenType is JsonTokenType.EndArray or JsonTokenType.EndObject && reader.CurrentDepth == depth))
                        {
                            reader.Read();
                        }
                    }
                }
                continue;
            }
            var which = NameIs(ref reader, "id"u8) ? 1 : NameIs(ref reader, "parameters"u8) ? 2 : NameIs(ref reader, "outputs"u8) ? 3 : 0;
            reader.Read();
            switch (which)
            {
                case 1: id = reader; hasId = true; break;
                case 2: parameters = reader; hasParameters = true; break;
                case 3: outputs = reader; hasOutputs = true; break;
            }
            reader.Skip();
        }
        ReadToEnd(ref reader);

        string? requestId = null;
        if (hasId)
        {
            requestId = id.TokenType == JsonTokenType.String
                ? id.GetString()
                : throw MedServeException.Invalid("'id' must be a string", "id");
        }
        var (allBinary, timeoutMicroseconds, priority) = hasParameters ? ReadParameters(ref parameters) : (false, 0L, RequestPriority.Online);
        if (inputsGiven == 0)
        {
            throw MedServeException.Invalid("'inputs' must be an array of tensors", "inputs");
        }
        if (inputsGiven > 1)
        {
            inputs = ReadInputs(ref lastInputs, json.Length, binary, maxElements, ref eager);
        }
        else if (inputsError is not null)
        {
            ExceptionDispatchInfo.Throw(inputsError);
        }
        var (requested, binaryOutputs) = hasOutputs ? ReadOutputs(ref outputs) : (null, NoBinaryOutputs);
        return (new InferenceRequest(inputs!, requested, requestId) { TimeoutMicroseconds = timeoutMicroseconds, Priority = priority },
            new V2OutputOptions(allBinary, binaryOutputs));
    }

    /// <summary>After the top-level value: only whitespace may follow (anything else is invalid JSON).</summary>
    private static void ReadToEnd(ref Utf8JsonReader reader)
    {
        if (reader.Read())
        {
            throw new InvalidOperationException("the JSON reader found a second top-level value"); // it throws JsonException first
        }
    }

    private static (bool AllBinary, long TimeoutMicroseconds, RequestPriority Priority) ReadParameters(ref Utf8JsonReader reader)
    {
        if (reader.TokenType == JsonTokenType.Null)
        {
            return (false, 0, RequestPriority.Online);
        }
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            throw MedServeException.Invalid("'parameters' must be an object", "parameters");
        }
        var allBinary = false;
        Utf8JsonReader timeout = default, priority = default;
        bool hasTimeout = false, hasPriority = false;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var which = NameIs(ref reader, "binary_data_output"u8) ? 1 : NameIs(ref reader, "timeout"u8) ? 2 : NameIs(ref reader, "priority"u8) ? 3 : 0;
            reader.Read();
            switch (which)
            {
                case 1: allBinary = reader.TokenType == JsonTokenType.True; break;
                case 2: timeout = reader; hasTimeout = true; break;
                case 3: priority = reader; hasPriority = true; break;
            }
            reader.Skip();
        }

        long timeoutMicroseconds = 0;
        if (hasTimeout)
        {
            // Triton and KServe: microseconds the request may wait before it runs.
            timeoutMicroseconds = timeout.TokenType == JsonTokenType.Number && timeout.TryGetInt64(out var us) && us is > 0 and <= BatchingPolicy.MaxTimeoutMicroseconds
                ? us
                : throw MedServeException.Invalid("parameters.timeout must be a whole number of microseconds from 1 to 3600000000 (one hour)", "parameters.timeout");
        }
        var requestPriority = RequestPriority.Online;
        if (hasPriority)
        {
            // 'online' (default) or 'batch': a caller may put its own bulk work behind interactive requests.
            requestPriority = priority.TokenType == JsonTokenType.String && TextEquals(ref priority, "batch"u8, "batch")
                ? RequestPriority.Job
                : priority.TokenType == JsonTokenType.String && TextEquals(ref priority, "online"u8, "online")
                    ? RequestPriority.Online
                    : throw MedServeException.Invalid("parameters.priority must be \"online\" or \"batch\"", "parameters.priority");
        }
        return (allBinary, timeoutMicroseconds, requestPriority);
    }

    /// <summary>
    /// At the value of an input's or output's <c>parameters</c>: reads past it, and says whether it is an object
    /// naming <paramref name="key"/>, with that value's token type and, for a whole number that fits a long, the
    /// number (a key given twice: the last one).
    /// </summary>
    private static bool ReadParameter(ref Utf8JsonReader reader, ReadOnlySpan<byte> key, out JsonTokenType valueType, out long? integer)
    {
        (valueType, integer) = (JsonTokenType.None, null);
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            reader.Skip();
            return false;
        }
        var found = false;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var isKey = NameIs(ref reader, key);
            reader.Read();
            if (isKey)
            {
                found = true;
                valueType = reader.TokenType;
                integer = reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var n) ? n : null;
            }
            reader.Skip();
        }
        return found;
    }

    /// <summary>
    /// Whether the property name at the reader is <paramref name="name"/>. A name whose escapes do not decode (a lone
    /// surrogate such as \ud800, on which <see cref="Utf8JsonReader.ValueTextEquals(ReadOnlySpan{byte})"/> throws) is no
    /// field of the protocol: it is skipped like any other unknown field.
    /// </summary>
    private static bool NameIs(ref Utf8JsonReader reader, ReadOnlySpan<byte> name)
    {
        if (!reader.ValueIsEscaped)
        {
            return reader.ValueSpan.SequenceEqual(name);
        }
        try
        {
            return reader.ValueTextEquals(name);
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>
    /// Whether the string token at the reader is <paramref name="utf8"/>. Escaped text is decoded as
    /// <see cref="Utf8JsonReader.GetString"/> does (which refuses escapes that are not valid UTF-16).
    /// </summary>
    private static bool TextEquals(ref Utf8JsonReader reader, ReadOnlySpan<byte> utf8, string text) =>
        reader.ValueIsEscaped ? reader.GetString() == text : reader.ValueSpan.SequenceEqual(utf8);

    private static (string[]? Requested, IReadOnlySet<string> Binary) ReadOutputs(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            throw MedServeException.Invalid("'outputs' must be an array", "outputs");
        }
        List<string>? names = null;
        HashSet<string>? binary = null;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            var index = names?.Count ?? 0;
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                throw MedServeException.Invalid($"outputs[{index}] needs a 'name'", "outputs");
            }
            Utf8JsonReader nameValue = default;
            var hasName = false;
            var binaryData = false;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (NameIs(ref reader, "name"u8))
                {
                    reader.Read();
                    nameValue = reader;
                    hasName = true;
                }
                else if (NameIs(ref reader, "parameters"u8))
                {
                    reader.Read();
                    binaryData = ReadParameter(ref reader, "binary_data"u8, out var type, out _) && type == JsonTokenType.True;
                    continue;
                }
                else
                {
                    reader.Read();
                }
                reader.Skip();
            }
            var name = hasName && nameValue.TokenType == JsonTokenType.String
                ? nameValue.GetString()!
                : throw MedServeException.Invalid($"outputs[{index}] needs a 'name'", "outputs");
            (names ??= []).Add(name);
            if (binaryData)
            {
                (binary ??= new HashSet<string>(StringComparer.Ordinal)).Add(name);
            }
        }
        return (names is { Count: > 0 } ? [.. names] : null, binary ?? (IReadOnlySet<string>)NoBinaryOutputs);
    }

    /// <summary>The 'inputs' array, the reader at its value; on return, at its end. <paramref name="eager"/>: see <see cref="ReadInput"/>.</summary>
    private static Tensor[] ReadInputs(ref Utf8JsonReader reader, int jsonBytes, ReadOnlySpan<byte> binary, long maxElements, ref bool eager)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            throw MedServeException.Invalid("'inputs' must be an array of tensors", "inputs");
        }
        var inputs = new Tensor[1];
        var count = 0;
        var binaryOffset = 0;
        long elements = 0;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            var input = ReadInput(ref reader, count, jsonBytes, binary, ref binaryOffset, ref elements, maxElements, ref eager);
            if (count == inputs.Length)
            {
                Array.Resize(ref inputs, count * 2);
            }
            inputs[count++] = input;
        }
        if (count == 0)
        {
            throw MedServeException.Invalid("'inputs' is empty", "inputs");
        }
        if (binaryOffset != binary.Length)
        {
            throw MedServeException.Invalid($"the body carries {binary.Length} bytes of binary data but the inputs' binary_data_size add up to {binaryOffset}", "binary_data_size");
        }
        if (count != inputs.Length)
        {
            Array.Resize(ref inputs, count);
        }
        return inputs;
    }

    /// <summary>What reading a data value gave.</summary>
    private enum DataRead
    {
        Complete,
        /// <summary>More elements than the buffer holds.</summary>
        TooMany,
        /// <summary>An element that is not a value of the datatype.</summary>
        Invalid,
        /// <summary>An escaped string, not decoded on the first pass: the data is read again when the input is complete.</summary>
        Escaped,
    }

    /// <summary>
    /// One input object, the reader at its start; on return, at its end. Fields are taken as they come; the data is read
    /// into its final buffer at once when the datatype and shape are already known (the usual order), else when the
    /// object has ended. The checks run when the object has ended, in the documented order.
    /// </summary>
    /// <remarks>
    /// A buffer allocated for the shape before the data is read is wasted when the input then fails, or a later field
    /// changes what it needs (a 'shape' given again). <paramref name="eager"/> allows it while no such buffer has been
    /// wasted in this request; after one has, data is read when its object has ended, so a request that repeats the
    /// pattern costs allocations in proportion to its data, not to the shapes it claims.
    /// </remarks>
    private static Tensor ReadInput(ref Utf8JsonReader reader, int index, int jsonBytes, ReadOnlySpan<byte> binary, ref int binaryOffset, ref long totalElements, long maxElements, ref bool eager)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            throw MedServeException.Invalid($"inputs[{index}] must be an object", "inputs");
        }
        Utf8JsonReader nameValue = default, datatypeValue = default, dataValue = default;
        bool hasName = false, hasDatatype = false, hasData = false;
        TensorDatatype? knownDatatype = null; // the datatype when its text is plainly one of the names, else null
        long[]? shape = null;  // null: no valid shape (yet)
        var shapeError = -2;   // -2: no 'shape'; -1: not an array; >= 0: the first bad dimension; ignored while shape is set
        long elements = 0;
        bool hasSize = false, sizeValid = false;
        long size = 0;
        // The data as read on the first pass, and the datatype and shape it was read for.
        byte[]? early = null;
        var earlyRead = DataRead.Complete;
        var earlyCount = 0;
        TensorDatatype earlyDatatype = default;
        long[]? earlyShape = null;

        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (NameIs(ref reader, "data"u8))
            {
                reader.Read();
                dataValue = reader;
                early = null;
                if (!hasData && eager && knownDatatype is { } dt && dt != TensorDatatype.BYTES && shape is not null && !hasSize
                    && elements <= maxElements - totalElements && elements <= int.MaxValue / 8 && elements <= jsonBytes / 2 + 1)
                {
                    // The usual order: datatype and shape first. Read the numbers straight into the tensor's buffer.
                    eager = false; // until the buffer is the tensor's
                    // Not zeroed: a buffer is returned only when every element was written (else the input is refused).
                    early = GC.AllocateUninitializedArray<byte>((int)elements * dt.ElementSize());
                    earlyRead = ReadData(ref reader, dt, early, (int)elements, decodeEscaped: false, out earlyCount);
                    (earlyDatatype, earlyShape) = (dt, shape);
                }
                else
                {
                    // Data given again is read once, when the object has ended.
                    reader.Skip();
                }
                hasData = true;
                continue;
            }
            if (NameIs(ref reader, "name"u8))
            {
                reader.Read();
                nameValue = reader;
                hasName = true;
            }
            else if (NameIs(ref reader, "datatype"u8))
            {
                reader.Read();
                datatypeValue = reader;
                hasDatatype = true;
                knownDatatype = reader.TokenType == JsonTokenType.String && !reader.ValueIsEscaped ? PlainDatatype(reader.ValueSpan) : null;
            }
            else if (NameIs(ref reader, "shape"u8))
            {
                reader.Read();
                shape = ReadShape(ref reader, out shapeError, out elements);
                continue;
            }
            else if (NameIs(ref reader, "parameters"u8))
            {
                reader.Read();
                hasSize = ReadParameter(ref reader, "binary_data_size"u8, out _, out var declared);
                (size, sizeValid) = (declared ?? 0, declared >= 0);
                continue;
            }
            else
            {
                reader.Read();
            }
            reader.Skip();
        }

        var name = hasName && nameValue.TokenType == JsonTokenType.String
            ? nameValue.GetString()!
            : throw MedServeException.Invalid($"inputs[{index}] needs a string 'name'", $"inputs[{index}].name");

        TensorDatatype datatype;
        if (knownDatatype is { } known)
        {
            datatype = known;
        }
        else if (!hasDatatype || !TensorTypes.TryParse(datatypeValue.TokenType == JsonTokenType.String ? datatypeValue.GetString() : null, out datatype))
        {
            throw MedServeException.Invalid($"{Field(index)}: 'datatype' must be one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64", Field(index));
        }
        if (datatype == TensorDatatype.BYTES)
        {
            throw MedServeException.Invalid($"{Field(index)}: datatype BYTES is not supported by this server", Field(index));
        }

        if (shape is null)
        {
            throw MedServeException.Invalid(shapeError < 0
                ? $"{Field(index)}: 'shape' must be an array of dimensions"
                : $"{Field(index)}: shape dimension {shapeError} must be a positive integer", Field(index));
        }
        if (elements > maxElements - totalElements)
        {
            throw new MedServeException(ErrorKind.TooLarge, totalElements == 0
                ? $"{Field(index)}: shape {ShapeText(shape)} has {ElementText(elements)} elements; the limit is {maxElements} per request (MedServe:Limits:MaxTensorElements)"
                : $"{Field(index)}: shape {ShapeText(shape)} has {ElementText(elements)} elements, {ElementText(totalElements)} already in earlier inputs; the limit is {maxElements} per request (MedServe:Limits:MaxTensorElements)", Field(index));
        }
        if (elements > int.MaxValue / 8)
        {
            throw new MedServeException(ErrorKind.TooLarge, $"{Field(index)}: shape {ShapeText(shape)} is too large for one tensor", Field(index));
        }
        totalElements += elements;

        var elementSize = datatype.ElementSize();
        var byteLength = checked((int)elements * elementSize);

        if (hasSize)
        {
            if (!sizeValid)
            {
                throw MedServeException.Invalid($"{Field(index)}: binary_data_size must be a non-negative integer", Field(index));
            }
            if (size != byteLength)
            {
                throw MedServeException.Invalid($"{Field(index)}: binary_data_size is {size} bytes but shape {ShapeText(shape)} of {datatype} needs {byteLength}", Field(index));
            }
            if (binaryOffset + size > binary.Length)
            {
                throw MedServeException.Invalid($"{Field(index)}: binary data is truncated: {size} bytes expected at offset {binaryOffset}, {Math.Max(0, binary.Length - binaryOffset)} present", Field(index));
            }
            // Every byte is written at once: no need for the runtime to zero the array first (a CT slice is 16 KB+).
            var bytes = GC.AllocateUninitializedArray<byte>((int)size);
            binary.Slice(binaryOffset, (int)size).CopyTo(bytes);
            binaryOffset += (int)size;
            return new Tensor(name, datatype, shape, bytes);
        }

        if (!hasData)
        {
            throw MedServeException.Invalid($"{Field(index)}: needs 'data' (or parameters.binary_data_size with a binary body)", Field(index));
        }
        if (elements > jsonBytes / 2 + 1)
        {
            // Every JSON element takes at least two bytes: refuse before allocating for a shape the body cannot fill.
            throw MedServeException.Invalid($"{Field(index)}: shape {ShapeText(shape)} needs {elements} elements but the body is only {jsonBytes} bytes", Field(index));
        }
        var (buffer, read, written) = (early, earlyRead, earlyCount);
        if (buffer is null || read == DataRead.Escaped || earlyDatatype != datatype || !ReferenceEquals(earlyShape, shape))
        {
            // The data came before the datatype or shape (or they were given again after it): read it now.
            buffer = GC.AllocateUninitializedArray<byte>(byteLength); // returned only when every element was written
            read = ReadData(ref dataValue, datatype, buffer, (int)elements, decodeEscaped: true, out written);
        }
        switch (read)
        {
            case DataRead.TooMany:
                throw MedServeException.Invalid($"{Field(index)}: data has more elements than its shape allows ({elements})", Field(index));
            case DataRead.Invalid:
                throw MedServeException.Invalid($"{Field(index)}: element {written} is not a valid {datatype} value", Field(index));
        }
        if (written != elements)
        {
            throw MedServeException.Invalid($"{Field(index)}: data has {written} elements but shape {ShapeText(shape)} needs {elements}", Field(index));
        }
        eager |= ReferenceEquals(buffer, early);
        return new Tensor(name, datatype, shape, buffer);
    }

    /// <summary>
    /// How messages name input <paramref name="index"/> (made only for a message). The caller chose the input's name: it
    /// may carry anything, patient data included, so messages name the position instead.
    /// </summary>
    private static string Field(int index) => $"inputs[{index}]";

    /// <summary>The datatype whose name <paramref name="text"/> is, exactly; null for anything else (which <see cref="TensorTypes.TryParse"/> then judges).</summary>
    private static TensorDatatype? PlainDatatype(ReadOnlySpan<byte> text) =>
        text.SequenceEqual("FP32"u8) ? TensorDatatype.FP32
        : text.SequenceEqual("INT64"u8) ? TensorDatatype.INT64
        : text.SequenceEqual("FP64"u8) ? TensorDatatype.FP64
        : text.SequenceEqual("FP16"u8) ? TensorDatatype.FP16
        : text.SequenceEqual("INT32"u8) ? TensorDatatype.INT32
        : text.SequenceEqual("UINT8"u8) ? TensorDatatype.UINT8
        : text.SequenceEqual("BOOL"u8) ? TensorDatatype.BOOL
        : text.SequenceEqual("INT8"u8) ? TensorDatatype.INT8
        : text.SequenceEqual("INT16"u8) ? TensorDatatype.INT16
        : text.SequenceEqual("UINT16"u8) ? TensorDatatype.UINT16
        : text.SequenceEqual("UINT32"u8) ? TensorDatatype.UINT32
        : text.SequenceEqual("UINT64"u8) ? TensorDatatype.UINT64
        : text.SequenceEqual("BYTES"u8) ? TensorDatatype.BYTES
        : null;

    /// <summary>
    /// A 'shape' value, the reader at it; on return, at its end. Null when it is not an array of positive integers:
    /// <paramref name="error"/> is then -1 (not an array) or the first bad dimension.
    /// </summary>
    private static long[]? ReadShape(ref Utf8JsonReader reader, out int error, out long elements)
    {
        elements = 1;
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            error = -1;
            reader.Skip();
            return null;
        }
        Span<long> dims = stackalloc long[16];
        List<long>? more = null;
        var count = 0;
        error = -2;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
        {
            if (error >= 0)
            {
                reader.Skip();
                continue;
            }
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out var value) || value < 1)
            {
                error = count;
                reader.Skip();
                continue;
            }
            if (count < dims.Length)
            {
                dims[count] = value;
            }
            else
            {
                (more ??= []).Add(value);
            }
            count++;
            elements = value > long.MaxValue / elements ? long.MaxValue : elements * value;
        }
        if (error >= 0)
        {
            return null;
        }
        var shape = new long[count];
        dims[..Math.Min(count, dims.Length)].CopyTo(shape);
        more?.CopyTo(shape, dims.Length);
        return shape;
    }

    /// <summary>
    /// A 'data' value (one element, or arrays nested to any depth, taken in order), the reader at it; on return, at its
    /// end. Elements go into <paramref name="buffer"/> as <paramref name="datatype"/>, little-endian; reading stops at
    /// the first element past <paramref name="capacity"/> or not a value of the datatype (<paramref name="written"/> is
    /// then its position), or, unless <paramref name="decodeEscaped"/>, at an escaped string.
    /// </summary>
    private static DataRead ReadData(ref Utf8JsonReader reader, TensorDatatype datatype, Span<byte> buffer, int capacity, bool decodeEscaped, out int written)
    {
        written = 0;
        var depth = reader.CurrentDepth;
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            var single = capacity == 0 ? DataRead.TooMany : WriteElement(ref reader, datatype, buffer, 0, decodeEscaped);
            written = single == DataRead.Complete ? 1 : 0;
            reader.Skip();
            return single;
        }
        DataRead outcome;
        while (true)
        {
            reader.Read();
            var token = reader.TokenType;
            if (token == JsonTokenType.StartArray)
            {
                continue;
            }
            if (token == JsonTokenType.EndArray)
            {
                if (reader.CurrentDepth == depth)
                {
                    return DataRead.Complete;
                }
                continue;
            }
            if (written >= capacity)
            {
                outcome = DataRead.TooMany;
                break;
            }
            outcome = WriteElement(ref reader, datatype, buffer, written, decodeEscaped);
            if (outcome != DataRead.Complete)
            {
                break;
            }
            written++;
        }
        // Stopped early: read on to the value's end, for the fields after it.
        while (!(reader.TokenType == JsonTokenType.EndArray && reader.CurrentDepth == depth))
        {
            reader.Read();
        }
        return outcome;
    }

    /// <summary>Writes the element at the reader (a number, true or false, or a string for NaN and the infinities) as element <paramref name="i"/>.</summary>
    private static DataRead WriteElement(ref Utf8JsonReader reader, TensorDatatype datatype, Span<byte> buffer, int i, bool decodeEscaped)
    {
        var token = reader.TokenType;
        switch (datatype)
        {
            case TensorDatatype.FP32:
            {
                var read = ReadFloating(ref reader, decodeEscaped, out var f32);
                if (read != DataRead.Complete)
                {
                    return read;
                }
                var v = (float)f32;
                if (float.IsInfinity(v) && !double.IsInfinity(f32))
                {
                    return DataRead.Invalid; // out of FP32 range
                }
                BinaryPrimitives.WriteSingleLittleEndian(buffer[(i * sizeof(float))..], v);
                return DataRead.Complete;
            }
            case TensorDatatype.FP64:
            {
                var read = ReadFloating(ref reader, decodeEscaped, out var f64);
                if (read == DataRead.Complete)
                {
                    BinaryPrimitives.WriteDoubleLittleEndian(buffer[(i * sizeof(double))..], f64);
                }
                return read;
            }
            case TensorDatatype.FP16:
            {
                var read = ReadFloating(ref reader, decodeEscaped, out var f16);
                if (read == DataRead.Complete)
                {
                    BinaryPrimitives.WriteHalfLittleEndian(buffer[(i * 2)..], (Half)f16);
                }
                return read;
            }
            case TensorDatatype.BOOL:
                if (token is JsonTokenType.True or JsonTokenType.False)
                {
                    buffer[i] = token == JsonTokenType.True ? (byte)1 : (byte)0;
                    return DataRead.Complete;
                }
                return DataRead.Invalid;
        }
        if (token != JsonTokenType.Number)
        {
            return DataRead.Invalid;
        }
        switch (datatype)
        {
            case TensorDatatype.UINT8 when reader.TryGetByte(out var u8): buffer[i] = u8; return DataRead.Complete;
            case TensorDatatype.INT8 when reader.TryGetSByte(out var i8): buffer[i] = unchecked((byte)i8); return DataRead.Complete;
            case TensorDatatype.UINT16 when reader.TryGetUInt16(out var u16): BinaryPrimitives.WriteUInt16LittleEndian(buffer[(i * 2)..], u16); return DataRead.Complete;
            case TensorDatatype.INT16 when reader.TryGetInt16(out var i16): BinaryPrimitives.WriteInt16LittleEndian(buffer[(i * 2)..], i16); return DataRead.Complete;
            case TensorDatatype.UINT32 when reader.TryGetUInt32(out var u32): BinaryPrimitives.WriteUInt32LittleEndian(buffer[(i * 4)..], u32); return DataRead.Complete;
            case TensorDatatype.INT32 when reader.TryGetInt32(out var i32): BinaryPrimitives.WriteInt32LittleEndian(buffer[(i * 4)..], i32); return DataRead.Complete;
            case TensorDatatype.UINT64 when reader.TryGetUInt64(out var u64): BinaryPrimitives.WriteUInt64LittleEndian(buffer[(i * 8)..], u64); return DataRead.Complete;
            case TensorDatatype.INT64 when reader.TryGetInt64(out var i64): BinaryPrimitives.WriteInt64LittleEndian(buffer[(i * 8)..], i64); return DataRead.Complete;
            default: return DataRead.Invalid;
        }
    }

    /// <summary>JSON has no NaN or infinity: the strings "NaN", "Infinity" and "-Infinity" stand for them.</summary>
    private static DataRead ReadFloating(ref Utf8JsonReader reader, bool decodeEscaped, out double value)
    {
        value = 0;
        if (reader.TokenType == JsonTokenType.Number)
        {
            return TryParseShort(reader.ValueSpan, out value) || reader.TryGetDouble(out value) ? DataRead.Complete : DataRead.Invalid;
        }
        if (reader.TokenType != JsonTokenType.String)
        {
            return DataRead.Invalid;
        }
        if (reader.ValueIsEscaped)
        {
            if (!decodeEscaped)
            {
                return DataRead.Escaped;
            }
            switch (reader.GetString())
            {
                case "NaN": value = double.NaN; return DataRead.Complete;
                case "Infinity" or "inf": value = double.PositiveInfinity; return DataRead.Complete;
                case "-Infinity" or "-inf": value = double.NegativeInfinity; return DataRead.Complete;
                default: return DataRead.Invalid;
            }
        }
        var text = reader.ValueSpan;
        if (text.SequenceEqual("NaN"u8))
        {
            value = double.NaN;
        }
        else if (text.SequenceEqual("Infinity"u8) || text.SequenceEqual("inf"u8))
        {
            value = double.PositiveInfinity;
        }
        else if (text.SequenceEqual("-Infinity"u8) || text.SequenceEqual("-inf"u8))
        {
            value = double.NegativeInfinity;
        }
        else
        {
            return DataRead.Invalid;
        }
        return DataRead.Complete;
    }

    /// <summary>Powers of ten that a double holds exactly.</summary>
    private static ReadOnlySpan<double> ExactPowersOf10 =>
    [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];

    /// <summary>
    /// Parses a JSON number of at most 15 significant digits and a power of ten within ±22 (what clients send: a float
    /// written in its shortest form, a feature value), false for any other. Such a number's digits and power of ten are
    /// both exact doubles, so one multiplication or division gives the correctly rounded double (Clinger's fast path):
    /// the value <see cref="Utf8JsonReader.TryGetDouble"/> gives, several times faster. The reader has already checked
    /// the number's syntax.
    /// </summary>
    private static bool TryParseShort(ReadOnlySpan<byte> text, out double value)
    {
        value = 0;
        var i = 0;
        var negative = text.Length > 0 && text[0] == (byte)'-';
        if (negative)
        {
            i++;
        }
        ulong digits = 0;
        var significant = 0;
        var scale = 0;
        var fraction = false;
        for (; i < text.Length; i++)
        {
            var c = text[i];
            if (c == (byte)'.')
            {
                fraction = true;
                continue;
            }
            var d = (uint)(c - '0');
            if (d > 9)
            {
                break;
            }
            if ((digits != 0 || d != 0) && ++significant > 15)
            {
                return false;
            }
            digits = (digits * 10) + d;
            scale -= fraction ? 1 : 0;
        }
        if (i < text.Length)
        {
            // The exponent: e or E, a sign, digits.
            if ((text[i] | 0x20) != 'e' || ++i == text.Length)
            {
                return false;
            }
            var negativeExponent = text[i] == (byte)'-';
            if (text[i] is (byte)'-' or (byte)'+')
            {
                i++;
            }
            var exponent = 0;
            var exponentDigits = 0;
            for (; i < text.Length; i++)
            {
                var d = (uint)(text[i] - '0');
                if (d > 9 || ++exponentDigits > 4)
                {
                    return false;
                }
                exponent = (exponent * 10) + (int)d;
            }
            if (exponentDigits == 0)
            {
                return false;
            }
            scale += negativeExponent ? -exponent : exponent;
        }
        if (digits == 0)
        {
            value = negative ? -0.0 : 0.0;
            return true;
        }
        if (scale is < -22 or > 22)
        {
            return false;
        }
        var magnitude = scale < 0 ? digits / ExactPowersOf10[-scale] : digits * ExactPowersOf10[scale];
        value = negative ? -magnitude : magnitude;
        return true;
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
