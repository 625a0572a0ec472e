using System.Buffers;

namespace MedServe.Protocol;

/// <summary>
/// An <see cref="IBufferWriter{T}"/> over arrays rented from <see cref="ArrayPool{T}.Shared"/>: responses are written
/// into a pooled buffer instead of a fresh one per request (a segmentation mask's answer is large-object-heap sized,
/// and growing a fresh buffer to it allocated several). <see cref="Dispose"/> clears what was written (answers are
/// patient data) and returns the buffer; nothing written may be read after that.
/// </summary>
public sealed class PooledBufferWriter(int initialCapacity = 4096) : IBufferWriter<byte>, IDisposable
{
    private byte[] _buffer = ArrayPool<byte>.Shared.Rent(Math.Max(256, initialCapacity));
    private int _written;

    public ReadOnlyMemory<byte> WrittenMemory => _buffer.AsMemory(0, _written);

    public int WrittenCount => _written;

    public void Advance(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (_written + count > _buffer.Length)
        {
            throw new InvalidOperationException("advanced past the end of the buffer");
        }
        _written += count;
    }

    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        var at = Reserve(sizeHint); // first: it may replace the buffer
        return _buffer.AsMemory(at);
    }

    public Span<byte> GetSpan(int sizeHint = 0)
    {
        var at = Reserve(sizeHint);
        return _buffer.AsSpan(at);
    }

    private int Reserve(int sizeHint)
    {
        var needed = _written + Math.Max(1, sizeHint);
        if (needed > _buffer.Length)
        {
            var bigger = ArrayPool<byte>.Shared.Rent((int)Math.Min(Array.MaxLength, Math.Max((long)needed, (long)_buffer.Length * 2)));
            _buffer.AsSpan(0, _written).CopyTo(bigger);
            _buffer.AsSpan(0, _written).Clear();
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = bigger;
        }
        return _written;
    }

    public void Dispose()
    {
        var buffer = Interlocked.Exchange(ref _buffer, []);
        if (buffer.Length > 0)
        {
            buffer.AsSpan(0, _written).Clear();
            ArrayPool<byte>.Shared.Return(buffer);
        }
        _written = 0;
    }
}
